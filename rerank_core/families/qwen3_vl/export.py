"""Qwen3-VL-Reranker to two ONNX graphs: the vision encoder (patches and their grid inputs → merged image features
and DeepStack features) and the decoder (token ids with image features placed by index, DeepStack added by index,
3-D rotary positions → the yes − no logit at each row's last token). Everything data-dependent is an input, computed
in numpy (vision_inputs.py, positions.py), so neither graph has a shape that depends on values."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

from ...quiet_export import quiet_export

VISION_GRAPH, DECODER_GRAPH, SETTINGS = "vision.onnx", "decoder.onnx", "qwen3_vl.json"
# transformers routes attention with per-image spans (cu_seqlens) only to implementations named "flash…"; this one
# is SDPA with a block mask built from the spans, which traces without the split by `cu_seqlens.tolist()`.
PACKED_ATTENTION = "flash_packed_sdpa"
OPSET = 18


def _packed_attention(module, query, key, value, attention_mask=None, scaling=None, cu_seq_lens_q=None, **_):
    """Attention within each image's span of the packed patches: [1, heads, n, d] → [1, n, heads, d]."""
    import torch

    positions = torch.arange(query.shape[2], device=query.device)
    image = (positions[:, None] >= cu_seq_lens_q[None, 1:-1]).sum(-1)  # which image each patch belongs to
    mask = image[:, None] == image[None, :]
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _vision_module(visual):
    import torch

    class VisionGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = visual

        def forward(self, pixel_values, interp_indices, interp_weights, rotary_ids, cu_seqlens):
            out = self.visual(
                pixel_values,
                grid_thw=None,  # every input it would derive from the grid is given
                interp_indices=interp_indices,
                interp_weights=interp_weights,
                position_ids=rotary_ids,
                cu_seqlens=cu_seqlens,
                max_seqlen=1,  # read by flash kernels only
            )
            return out.pooler_output, torch.stack(out.deepstack_features)

    return VisionGraph().eval()


def _decoder_module(text, direction):
    import torch

    def add_at_image_positions(self, hidden, image_positions, features):  # DeepStack, by index, not by a mask
        flat = hidden.reshape(-1, hidden.shape[-1])
        return flat.index_put((image_positions,), features, accumulate=True).reshape(hidden.shape)

    text._deepstack_process = types.MethodType(add_at_image_positions, text)

    class DecoderGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.text = text
            self.register_buffer("direction", direction)

        def forward(
            self, input_ids, attention_mask, position_ids, image_positions, image_features, deepstack, last_index
        ):
            embeds = self.text.embed_tokens(input_ids)
            flat = embeds.reshape(-1, embeds.shape[-1]).index_put((image_positions,), image_features)
            hidden = self.text(
                inputs_embeds=flat.reshape(embeds.shape),
                attention_mask=attention_mask,
                position_ids=position_ids,
                visual_pos_masks=image_positions,
                deepstack_visual_embeds=list(deepstack.unbind(0)),
                use_cache=False,
            ).last_hidden_state
            return hidden[torch.arange(hidden.shape[0]), last_index] @ self.direction

    return DecoderGraph().eval()


def export_vl_checkpoint(src_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the Qwen3-VL-Reranker checkpoint in `src_dir` (f32) to `out_dir`: both graphs, the tokenizer and the
    settings the scorer reads."""
    import torch
    from transformers import AttentionInterface, AutoTokenizer, Qwen3VLForConditionalGeneration

    src, out = Path(src_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(src)
    yes_id, no_id = (tokenizer.convert_tokens_to_ids(word) for word in ("yes", "no"))
    with quiet_export():
        model = Qwen3VLForConditionalGeneration.from_pretrained(src, dtype=torch.float32).eval()
    AttentionInterface.register(PACKED_ATTENTION, _packed_attention)
    visual = model.model.visual
    visual.config._attn_implementation = PACKED_ATTENTION
    direction = (model.lm_head.weight[yes_id] - model.lm_head.weight[no_id]).detach()
    patch_dim = visual.patch_embed.proj.weight[0].numel()
    hidden, layers = model.config.text_config.hidden_size, len(visual.deepstack_visual_indexes)
    n, k = torch.export.Dim("patches", min=4), torch.export.Dim("spans", min=2)
    vision_inputs = {
        "pixel_values": (torch.zeros(8, patch_dim), {0: n}),
        "interp_indices": (torch.zeros(8, 4, dtype=torch.int64), {0: n}),
        "interp_weights": (torch.full((8, 4), 0.25), {0: n}),
        "rotary_ids": (torch.zeros(8, 2, dtype=torch.int64), {0: n}),
        "cu_seqlens": (torch.tensor([0, 4, 8], dtype=torch.int32), {0: k}),
    }
    _export(_vision_module(visual), vision_inputs, ["image_features", "deepstack"], out / VISION_GRAPH)
    b, s, v = torch.export.Dim("rows", min=1), torch.export.Dim("tokens", min=2), torch.export.Dim("visual", min=1)
    decoder_inputs = {
        "input_ids": (torch.ones(2, 6, dtype=torch.int64), {0: b, 1: s}),
        "attention_mask": (torch.ones(2, 6, dtype=torch.int64), {0: b, 1: s}),
        "position_ids": (torch.arange(6).expand(3, 2, 6).contiguous(), {1: b, 2: s}),
        "image_positions": (torch.tensor([1, 2, 8]), {0: v}),
        "image_features": (torch.zeros(3, hidden), {0: v}),
        "deepstack": (torch.zeros(layers, 3, hidden), {1: v}),
        "last_index": (torch.tensor([5, 5]), {0: b}),
    }
    _export(_decoder_module(model.model.language_model, direction), decoder_inputs, ["logit"], out / DECODER_GRAPH)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    shutil.copy(src / "config.json", out / "config.json")
    settings = {
        "yes_id": yes_id,
        "no_id": no_id,
        "image_pad_id": model.config.image_token_id,
        "special_ids": sorted(tokenizer.all_special_ids),
        "num_position_embeddings": visual.config.num_position_embeddings,
        "deepstack_layers": layers,
        "hidden_size": hidden,
    }
    (out / SETTINGS).write_text(json.dumps(settings, indent=2))
    return out


def _export(module, inputs: dict, outputs: list[str], path: Path) -> None:
    import torch

    with quiet_export(), torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example for example, _ in inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=outputs,
            dynamic_shapes={name: dims for name, (_, dims) in inputs.items()},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
