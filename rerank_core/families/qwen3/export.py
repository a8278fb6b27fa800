"""What the exporter asks of a Qwen3 checkpoint: the causal LM loaded, its yes/no ids, and per layout the scoring head
traced, its sample inputs and which of their axes vary (imported only when exporting: it needs torch)."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from ...dtypes import Dtype
from ..base import FamilyExporter, Trace
from .calibration import down_input_maxima
from .encoder import DEFAULT_MAX_LENGTH
from .heads import HEADS
from .template import PREFIX, SUFFIX

OPSET = 18
CUDA_OPSET = 23  # ONNX's fused Attention op (grouped KV heads, is_causal)
# The layouts traced on ONNX opset 23 (its fused Attention; the rest for RMSNormalization beside com.microsoft ops).
OPSET_23_LAYOUTS = ("causal", "past_kv", "fused", "paged")


def kv_names(num_layers: int, prefix: str = "past_") -> list[str]:
    """Names of the K/V inputs (prefix 'past_') or outputs (prefix '') of a past-K/V graph, in layer order."""
    return [f"{prefix}{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]


class Qwen3Exporter(FamilyExporter):
    """Qwen3ForCausalLM checkpoints → one-logit graphs of every layout (heads.py)."""

    prefix, suffix, max_length = PREFIX, SUFFIX, DEFAULT_MAX_LENGTH
    gpu_layouts = ("causal", "fused", "paged")

    def cpu_layout(self, past_kv: bool) -> str:
        return "past_kv" if past_kv else "plain"

    def load(self, src_dir: Path, dtype: Dtype):
        torch_dtype = torch.float16 if dtype is Dtype.F16 else torch.float32
        model = transformers.AutoModelForCausalLM.from_pretrained(
            src_dir, dtype=torch_dtype, attn_implementation="sdpa"
        )
        return model.eval()

    def answer_ids(self, src_dir: Path):
        tokenizer = transformers.AutoTokenizer.from_pretrained(src_dir)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        return tokenizer, tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no"), pad_id

    def trace(self, model, layout: str, yes_id: int, no_id: int) -> Trace:
        head = HEADS[layout]
        module = head(model) if layout == "full_logits" else head(model, yes_id, no_id)
        inputs = _sample_inputs(model, layout)
        shapes = _dynamic_shapes(layout, inputs)
        input_names, output_names = list(shapes), ["logits" if layout == "full_logits" else "logit"]
        if layout == "past_kv":
            past = torch.export.Dim("past")
            shapes["past"] = tuple({2: past} for _ in inputs["past"])
            input_names += kv_names(model.config.num_hidden_layers)
            output_names += kv_names(model.config.num_hidden_layers, prefix="")
        opset = CUDA_OPSET if layout in OPSET_23_LAYOUTS else OPSET
        return Trace(module, tuple(inputs.values()), input_names, output_names, shapes, opset)

    def finish(self, layout: str, graph_file: Path) -> None:
        if layout in ("fused", "paged"):
            _finish_fused(graph_file)

    def calibrate_int8(self, src_dir: Path):
        return down_input_maxima(src_dir)


def _sample_inputs(model, layout: str) -> dict:
    if layout == "paged":
        return _paged_sample_inputs(model)
    ids = torch.randint(0, min(model.config.vocab_size, 1000), (2, 16), generator=torch.Generator().manual_seed(0))
    if layout in ("causal", "past_kv", "fused"):
        inputs = {"input_ids": ids, "last_index": torch.tensor([15, 9])}  # right padding: row 1 has 10 real tokens
        if layout == "past_kv":
            cfg = model.config
            shape = (
                1,
                cfg.num_key_value_heads,
                7,
                getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads),
            )
            dtype = next(model.parameters()).dtype
            inputs["past"] = tuple(torch.randn(shape, dtype=dtype) for _ in range(2 * cfg.num_hidden_layers))
        return inputs
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # trace with left padding present
    inputs = {"input_ids": ids, "attention_mask": mask}
    if layout == "full_logits":
        inputs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
    return inputs


def _paged_sample_inputs(model) -> dict:
    """Three packed sequences over a cache of 4-token blocks: a 4-token prefix, a 5-token continuation of it (past 4,
    its table starting with the prefix's block) and a 7-token sequence of its own; the last two scored."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    dtype = next(model.parameters()).dtype
    int32 = {"dtype": torch.int32}
    return {
        "input_ids": torch.randint(0, min(cfg.vocab_size, 1000), (16,), generator=torch.Generator().manual_seed(0)),
        "cumulative_sequence_length": torch.tensor([0, 4, 9, 16], **int32),
        "past_seqlens": torch.tensor([0, 4, 0], **int32),
        "block_table": torch.tensor([[0, 0], [0, 1], [2, 3]], **int32),
        "key_cache": torch.zeros((4, 4, cfg.num_key_value_heads, head_dim), dtype=dtype),
        "value_cache": torch.zeros((4, 4, cfg.num_key_value_heads, head_dim), dtype=dtype),
        "attention_metadata": torch.tensor([7, 9], **int32),
        "last_index": torch.tensor([8, 15]),
    }


def _dynamic_shapes(layout: str, inputs: dict) -> dict:
    """Which axes of each traced input vary between calls."""
    if layout == "paged":
        seqs, blocks = torch.export.Dim("sequences"), torch.export.Dim("num_blocks")
        cache = {0: blocks, 1: torch.export.Dim("block_size")}
        return {
            "input_ids": {0: torch.export.Dim("tokens")},
            "cumulative_sequence_length": {0: torch.export.Dim("sequences_plus_1")},
            "past_seqlens": {0: seqs},
            "block_table": {0: seqs, 1: torch.export.Dim("max_blocks")},
            "key_cache": cache,
            "value_cache": cache,
            "attention_metadata": None,
            "last_index": {0: torch.export.Dim("scored")},
        }
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    return {
        name: {0: batch} if tensor.dim() == 1 else {0: batch, 1: seq}
        for name, tensor in inputs.items()
        if name != "past"
    }


def _finish_fused(graph_file: Path) -> None:
    """Leave the mean and inverse-deviation outputs of each SkipSimplifiedLayerNormalization unnamed (nothing reads
    them, and an unnamed optional output is one the kernel neither computes nor, on CUDA, has to support), and name
    the nodes torch.onnx.ops.symbolic wrote by op and layer, so ONNX Runtime's messages say which one."""
    import onnx

    model = onnx.load(str(graph_file), load_external_data=False)  # weights stay where they are, referenced
    seen: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "SkipSimplifiedLayerNormalization":
            node.output[1] = node.output[2] = ""
        if node.domain == "com.microsoft":
            node.name = f"{node.op_type}_{seen.setdefault(node.op_type, 0)}"
            seen[node.op_type] += 1
    onnx.save(model, str(graph_file))
