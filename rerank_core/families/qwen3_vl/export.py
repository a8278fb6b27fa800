"""What the exporter asks of a Qwen3-VL-Reranker checkpoint (imported only when exporting: torch): the model, its
yes/no ids, the decoder traced as a past-K/V head (layout `mrope_past_kv`), and beside it the vision encoder's graph
and the settings the scorer reads. Everything data-dependent (positions, the encoder's grid inputs) is an input,
computed in numpy, so neither graph has a shape that depends on values."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from ...dtypes import Dtype
from ...quiet_export import quiet_export
from ..base import FamilyExporter, Trace
from ..qwen3.calibration import CALIBRATION_PAIRS, record_down_inputs
from .heads import IMAGE_ATTENTION, MropePrefixLogit, VisionEncoder, image_attention
from .settings import VISION_GRAPH, VISION_INT8_GRAPH, VLSettings
from .template import MAX_LENGTH, PREFIX, SUFFIX, Side, prompt

# ONNX's Attention op: on a CPU it ran a 1280 × 720 image through the 2B shape's ViT in 32–36 s, where opset 18's
# attention as separate nodes took 54 (2 Zen 3 cores; transformers' SDPA: 35).
OPSET = 23
LAYOUT = "mrope_past_kv"


def kv_names(num_layers: int, prefix: str = "past_") -> list[str]:
    """Names of the K/V inputs (prefix 'past_') or outputs (prefix '') of the decoder graph, in layer order."""
    return [f"{prefix}{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]


class Qwen3VLExporter(FamilyExporter):
    """Qwen3VLForConditionalGeneration checkpoints → the decoder graph per dtype, and one vision encoder graph."""

    prefix, suffix, max_length = PREFIX, SUFFIX, MAX_LENGTH
    gpu_layouts = ()
    int8_companions = {VISION_GRAPH: VISION_INT8_GRAPH}

    def cpu_layout(self, past_kv: bool) -> str:
        return LAYOUT  # the one CPU layout: the decoder continues a prefix's K/V

    def load(self, src_dir: Path, dtype: Dtype):
        torch_dtype = torch.float16 if dtype is Dtype.F16 else torch.float32
        with quiet_export():
            model = transformers.Qwen3VLForConditionalGeneration.from_pretrained(src_dir, dtype=torch_dtype)
        transformers.AttentionInterface.register(IMAGE_ATTENTION, image_attention)
        model.model.visual.config._attn_implementation = IMAGE_ATTENTION
        return model.eval()

    def answer_ids(self, src_dir: Path):
        tokenizer = transformers.AutoTokenizer.from_pretrained(src_dir)
        yes_id, no_id = (tokenizer.convert_tokens_to_ids(word) for word in ("yes", "no"))
        return tokenizer, yes_id, no_id, tokenizer.pad_token_id

    def trace(self, model, layout: str, yes_id: int, no_id: int) -> Trace:
        if layout != LAYOUT:
            raise ValueError(f"Qwen3-VL graphs are {LAYOUT!r}, not {layout!r}")
        text = model.config.text_config
        layers = len(model.model.visual.deepstack_visual_indexes)
        dtype = next(model.parameters()).dtype
        generator = torch.Generator().manual_seed(0)
        kv_shape = (1, text.num_key_value_heads, 7, text.head_dim)
        inputs = {
            "input_ids": torch.randint(0, 1000, (2, 16), generator=generator),
            "position_ids": torch.arange(7, 23).expand(3, 2, 16).contiguous(),
            "image_positions": torch.tensor([1, 2, 20]),
            "image_features": torch.randn(3, text.hidden_size, generator=generator).to(dtype),
            "deepstack": torch.randn(layers, 3, text.hidden_size, generator=generator).to(dtype),
            "last_index": torch.tensor([15, 9]),  # right padding: row 1 has 10 real tokens
            "past": tuple(
                torch.randn(kv_shape, generator=generator).to(dtype) for _ in range(2 * text.num_hidden_layers)
            ),
        }
        batch, seq, visual = (torch.export.Dim(name) for name in ("batch", "seq", "visual"))
        past = torch.export.Dim("past")
        shapes = {
            "input_ids": {0: batch, 1: seq},
            "position_ids": {1: batch, 2: seq},
            "image_positions": {0: visual},
            "image_features": {0: visual},
            "deepstack": {1: visual},
            "last_index": {0: batch},
            "past": tuple({2: past} for _ in inputs["past"]),
        }
        names = [name for name in inputs if name != "past"] + kv_names(text.num_hidden_layers)
        outputs = ["logit", *kv_names(text.num_hidden_layers, prefix="")]
        module = MropePrefixLogit(model, yes_id, no_id, layers)
        return Trace(module, tuple(inputs.values()), names, outputs, shapes, OPSET)

    def finish(self, layout: str, graph_file: Path) -> None:
        """Nothing to touch."""

    def calibrate_int8(self, src_dir: Path):
        """The decoder's down-projection statistics on the text family's calibration pairs in this family's prompt
        (text only: the int8 decoder's images are calibrated by nothing but its weights)."""
        model = self.load(src_dir, Dtype.F32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(src_dir)
        prompts = [prompt(Side((query,)), Side((document,)), None) for query, document in CALIBRATION_PAIRS]
        text = model.model.language_model
        return record_down_inputs(text.layers, tokenizer, text, prompts)

    def write_companions(self, src_dir: Path, out_dir: Path) -> None:
        """The vision encoder's graph (f32: its features feed every decoder dtype but int8's, whose export quantizes
        its blocks beside it) and the scorer's settings."""
        model = self.load(src_dir, Dtype.F32)
        visual = model.model.visual
        patch_dim = visual.patch_embed.proj.weight[0].numel()
        n, k = torch.export.Dim("patches", min=4), torch.export.Dim("spans", min=2)
        inputs = {
            "pixel_values": (torch.zeros(8, patch_dim), {0: n}),
            "interp_indices": (torch.zeros(8, 4, dtype=torch.int64), {0: n}),
            "interp_weights": (torch.full((8, 4), 0.25), {0: n}),
            "rotary_ids": (torch.zeros(8, 2, dtype=torch.int64), {0: n}),
            "cu_seqlens": (torch.tensor([0, 4, 8], dtype=torch.int32), {0: k}),
        }
        with quiet_export(), torch.no_grad():
            torch.onnx.export(
                VisionEncoder(visual).eval(),
                tuple(example for example, _ in inputs.values()),
                str(out_dir / VISION_GRAPH),
                input_names=list(inputs),
                output_names=["image_features", "deepstack"],
                dynamic_shapes={name: dims for name, (_, dims) in inputs.items()},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        tokenizer = transformers.AutoTokenizer.from_pretrained(src_dir)
        VLSettings(
            image_pad_id=model.config.image_token_id,
            special_ids=tuple(sorted(tokenizer.all_special_ids)),
            num_position_embeddings=visual.config.num_position_embeddings,
            deepstack_layers=len(visual.deepstack_visual_indexes),
            hidden_size=model.config.text_config.hidden_size,
        ).write(out_dir)
