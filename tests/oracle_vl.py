"""The official Qwen3-VL-Reranker recipe (QwenLM/Qwen3-VL-Embedding, src/models/qwen3_vl_reranker.py, with
qwen-vl-utils' fetch_image), the oracle of the VL family's tests, independent of the product: its own prompt
strings, its own smart_resize, transformers' tokenizer, image processor and Qwen3VLForConditionalGeneration.
(The script itself needs transformers 4.57 and qwen-vl-utils needs torchvision, which has no build for our CPU torch.)
A side is {"text": [str, ...], "image": [PIL image, ...]}."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


def recipe_size(height: int, width: int, factor=32, min_pixels=4 * 32 * 32, max_pixels=1800 * 32 * 32):
    """qwen-vl-utils' smart_resize as the reranker recipe calls it: (height, width)."""
    h_bar, w_bar = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        return math.floor(height / scale / factor) * factor, math.floor(width / scale / factor) * factor
    if h_bar * w_bar < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        return math.ceil(height * scale / factor) * factor, math.ceil(width * scale / factor) * factor
    return h_bar, w_bar


def fetched(image):
    """fetch_image: RGBA onto white, other modes to RGB, resized (Pillow's default, bicubic) by smart_resize."""
    from PIL import Image

    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        image = white
    else:
        image = image.convert("RGB")
    height, width = recipe_size(image.height, image.width)
    return image.resize((width, height))


def recipe_ids(tokenizer, query: dict, document: dict, instruction, max_length: int, sizes=None) -> list[int]:
    """The recipe's input ids for one pair; `sizes` the (width, height) of each image in prompt order, else read
    from the sides' images."""
    contents = [{"type": "text", "text": "<Instruct>: " + (instruction or DEFAULT_INSTRUCTION)}]
    for prefix, side in (("<Query>:", query), ("\n<Document>:", document)):
        contents.append({"type": "text", "text": prefix})
        if not side.get("text") and not side.get("image"):
            contents.append({"type": "text", "text": "NULL"})
            continue
        contents += [{"type": "image", "image": image} for image in side.get("image", [])]
        contents += [{"type": "text", "text": text} for text in side.get("text", [])]
    sizes = iter(sizes or [part["image"].size for part in contents if part["type"] == "image"])
    rendered = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
    for part in contents:  # the chat template: text as it is, an image as its vision markers
        if part["type"] == "text":
            rendered += part["text"]
        else:
            width, height = next(sizes)
            new_h, new_w = recipe_size(height, width)
            rendered += "<|vision_start|>" + "<|image_pad|>" * ((new_h // 16) * (new_w // 16) // 4) + "<|vision_end|>"
    rendered += "<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    body, special = ids[:-5], set(tokenizer.all_special_ids)
    if len(body) > max_length:  # truncate_tokens_optimized
        keep, kept = max_length - sum(1 for i in body if i in special), []
        for i in body:
            if i in special or keep > 0:
                kept.append(i)
                keep -= i not in special
        body = kept
    return body + ids[-5:]


class OfficialVLRecipe:
    """The recipe on a checkpoint: one pair per forward, sigmoid((lm_head[yes] − lm_head[no]) · last hidden state)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", dtype: str = "float32"):
        import torch
        from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self._torch, self.device = torch, device
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.images = Qwen2VLImageProcessorPil.from_pretrained(checkpoint)
        model = Qwen3VLForConditionalGeneration.from_pretrained(checkpoint, dtype=getattr(torch, dtype))
        model = model.to(device).eval()
        self.model = model.model
        yes, no = (self.tokenizer.get_vocab()[word] for word in ("yes", "no"))
        self.direction = (model.lm_head.weight[yes] - model.lm_head.weight[no]).detach()
        self.image_pad_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def inputs(self, query: dict, document: dict, instruction=None, max_length: int = 10_240) -> dict:
        """The model's inputs for one pair, as the recipe's tokenize() makes them."""
        torch = self._torch
        images = [fetched(image) for image in (*query.get("image", []), *document.get("image", []))]
        ids = recipe_ids(self.tokenizer, query, document, instruction, max_length, [im.size for im in images])
        input_ids = torch.tensor([ids])
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": (input_ids == self.image_pad_id).int(),
        }
        if images:
            pixels = self.images(images=images, do_resize=False, return_tensors="pt")
            pixel_values = pixels["pixel_values"].to(self.model.dtype)
            inputs.update(pixel_values=pixel_values, image_grid_thw=pixels["image_grid_thw"])
        return {name: value.to(self.device) for name, value in inputs.items()}

    def score(self, pairs, instruction=None, max_length: int = 10_240) -> np.ndarray:
        """Scores of (query side, document side) pairs, one forward each."""
        out = []
        with self._torch.no_grad():
            for query, document in pairs:
                hidden = self.model(**self.inputs(query, document, instruction, max_length)).last_hidden_state
                out.append(float(self._torch.sigmoid((hidden[0, -1] @ self.direction).float())))
        return np.asarray(out, dtype=np.float64)
