"""Export a Hugging Face Qwen3-Reranker checkpoint to a lean ONNX graph: one logit (l_yes − l_no) per row."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..cpu import int8_weight_bits
from ..dtypes import Dtype, graph_dtype
from ..errors import ModelFormatError
from ..locate.folder import CHECKPOINT_PATTERNS
from ..locate.hub import resolve_model_dir
from ..locate.manifest import GraphEntry, Manifest
from ..tokenization import DEFAULT_MAX_LENGTH
from .calibration import down_input_maxima
from .quantize import quantize_int8
from .quiet import quiet_export

log = logging.getLogger(__name__)

# Bump when the graphs change: cached exports (export/cache.py) are keyed by it.
EXPORTER_VERSION = "9"
GRAPH_NAMES = {Dtype.F32: "model.onnx", Dtype.F16: "model_f16.onnx", Dtype.INT8: "model_int8.onnx"}
# The GPU graphs (right padding, fused causal attention); f32 exists to check them on a CPU.
CUDA_GRAPH_NAMES = {Dtype.F32: "model_cuda.onnx", Dtype.F16: "model_cuda_f16.onnx"}
# The same on ONNX Runtime's fused operators (layout `fused`, export/heads.py); they run on its CPU provider too.
FUSED_GRAPH_NAMES = {Dtype.F32: "model_fused.onnx", Dtype.F16: "model_fused_f16.onnx"}
# The same with packed tokens and a block K/V cache (layout `paged`): no padding, prefixes shared inside a call.
PAGED_GRAPH_NAMES = {Dtype.F32: "model_paged.onnx", Dtype.F16: "model_paged_f16.onnx"}
# Each GPU layout: the export_checkpoint option that asks for it, and its graph files by dtype.
GPU_GRAPHS = {
    "causal": ("cuda_dtypes", CUDA_GRAPH_NAMES),
    "fused": ("fused_dtypes", FUSED_GRAPH_NAMES),
    "paged": ("paged_dtypes", PAGED_GRAPH_NAMES),
}
# The layouts traced on ONNX opset 23 (its fused Attention; the rest for RMSNormalization beside com.microsoft ops).
OPSET_23_LAYOUTS = ("causal", "past_kv", "fused", "paged")
# ONNX protobufs cannot exceed 2 GiB; above this many weight bytes the tensors go to an external file.
EXTERNAL_DATA_BYTES = 1_500_000_000
OPSET = 18
CUDA_OPSET = 23  # ONNX's fused Attention op (grouped KV heads, is_causal)


def _require_torch():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(
            "exporting needs the export extra: pip install 'qwen-rerank[export]' (pins torch==2.13.0)"
        ) from exc
    return torch, transformers


def _load(src_dir: Path, dtype: Dtype):
    torch, transformers = _require_torch()
    config = transformers.AutoConfig.from_pretrained(src_dir)
    if config.model_type != "qwen3":
        raise ModelFormatError(f"{src_dir} holds a {config.model_type!r} model; the exporter handles Qwen3 (qwen3)")
    torch_dtype = torch.float16 if dtype is Dtype.F16 else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch_dtype, attn_implementation="sdpa")
    return torch, model.eval()


def _sample_inputs(torch, model, layout: str) -> dict:
    if layout == "paged":
        return _paged_sample_inputs(torch, model)
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


def _paged_sample_inputs(torch, model) -> dict:
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


def _dynamic_shapes(torch, layout: str, inputs: dict) -> dict:
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


def kv_names(num_layers: int, prefix: str = "past_") -> list[str]:
    """Names of the K/V inputs (prefix 'past_') or outputs (prefix '') of a past-K/V graph, in layer order."""
    return [f"{prefix}{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]


def _export_graph(src_dir: Path, out_file: Path, dtype: Dtype, yes_id: int, no_id: int, layout: str) -> None:
    """Export one graph of `layout` (see backends/onnx/layouts.py): past_kv, causal, fused, plain or full_logits."""
    with quiet_export():
        _export_quietly(src_dir, out_file, dtype, yes_id, no_id, layout)
    if layout in ("fused", "paged"):
        _finish_fused(out_file)


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


def _export_quietly(src_dir: Path, out_file: Path, dtype: Dtype, yes_id: int, no_id: int, layout: str) -> None:
    """_export_graph's work, under quiet_export."""
    torch, model = _load(src_dir, dtype)
    from .heads import HEADS

    head = HEADS[layout]
    module = head(model) if layout == "full_logits" else head(model, yes_id, no_id)
    inputs = _sample_inputs(torch, model, layout)
    shapes = _dynamic_shapes(torch, layout, inputs)
    input_names, output_names = list(shapes), ["logits" if layout == "full_logits" else "logit"]
    if layout == "past_kv":
        past = torch.export.Dim("past")
        shapes["past"] = tuple({2: past} for _ in inputs["past"])
        input_names += kv_names(model.config.num_hidden_layers)
        output_names += kv_names(model.config.num_hidden_layers, prefix="")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            tuple(inputs.values()),
            str(out_file),
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=shapes,
            opset_version=CUDA_OPSET if layout in OPSET_23_LAYOUTS else OPSET,
            dynamo=True,
            external_data=weight_bytes > EXTERNAL_DATA_BYTES,
            verbose=False,
        )


def export_checkpoint(
    src: str | Path,
    out_dir: str | Path,
    *,
    dtypes: Iterable[Dtype | str] = (Dtype.F32,),
    revision: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    overwrite: bool = False,
    full_logits: bool = False,
    source_name: str | None = None,
    cuda_dtypes: Iterable[Dtype | str] = (),
    fused_dtypes: Iterable[Dtype | str] = (),
    paged_dtypes: Iterable[Dtype | str] = (),
    past_kv: bool = True,
) -> Path:
    """Export checkpoint `src` (folder or Hub id) to `out_dir`: one graph per dtype, tokenizer, config, manifest.

    `cuda_dtypes` (f16, f32) adds the GPU graphs: right padding and ONNX's fused Attention, which `device: cuda`
    loads in place of the CPU graph of the same dtype. `fused_dtypes` (f16, f32) adds the same on ONNX Runtime's
    fused operators (layout `fused`: one GEMM for q, k, v and one for gate + up, GroupQueryAttention with RoPE
    inside, residual adds fused with the norms), which `graph_variant: fused` loads on any provider. `paged_dtypes`
    adds `fused` with packed tokens and a block K/V cache (layout `paged`, `graph_variant: paged`): no padding, and
    the documents of one query attend to its prompt computed once per call.
    `past_kv` (default) makes the graphs take the K/V of a shared prefix, so each query's prompt runs once per call
    (prefix sharing); `past_kv=False` writes plain graphs (input_ids, attention_mask → logit) for other runtimes.
    `full_logits=True` writes instead the naive [batch, seq, vocab] graph laid out like third-party exports
    (no manifest); it exists for tests and benchmarks. `source_name` replaces `src` as the recorded source.
    """
    wanted = list(dict.fromkeys(graph_dtype(Dtype.parse(d)) for d in dtypes))  # bf16: the f32 graph
    asked_by_option = {"cuda_dtypes": cuda_dtypes, "fused_dtypes": fused_dtypes, "paged_dtypes": paged_dtypes}
    gpu_graphs = {}
    for layout, (option, names) in GPU_GRAPHS.items():
        asked = list(dict.fromkeys(Dtype.parse(d) for d in asked_by_option[option]))
        if unsupported := [d.value for d in asked if d not in names]:
            raise ValueError(f"{option}: no GPU graph for {unsupported}; choose from f16, f32")
        gpu_graphs[layout] = (names, asked)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
    src_dir = resolve_model_dir(src, revision=revision, allow_patterns=CHECKPOINT_PATTERNS)
    _, transformers = _require_torch()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(src_dir)
    yes_id = hf_tokenizer.convert_tokens_to_ids("yes")
    no_id = hf_tokenizer.convert_tokens_to_ids("no")
    pad_id = hf_tokenizer.pad_token_id
    if pad_id is None:
        pad_id = hf_tokenizer.convert_tokens_to_ids("<|endoftext|>")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        hf_tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        shutil.copy(src_dir / "config.json", staging / "config.json")
        if full_logits:
            _export_graph(src_dir, staging / "model.onnx", Dtype.F32, yes_id, no_id, "full_logits")
            (staging / "tokenizer_config.json").write_text(json.dumps({"pad_token": hf_tokenizer.pad_token}))
        else:
            ids = {"yes_id": yes_id, "no_id": no_id}
            graphs = _export_cpu_graphs(src_dir, staging, wanted, "past_kv" if past_kv else "plain", **ids)
            for layout, (names, asked) in gpu_graphs.items():
                for dtype in asked:
                    log.info("exporting %s GPU graph (%s) of %s", dtype.value, layout, src)
                    _export_graph(src_dir, staging / names[dtype], dtype, yes_id, no_id, layout)
                    graphs.append(GraphEntry(file=names[dtype], dtype=dtype, layout=layout))
            Manifest(
                graphs=graphs,
                **ids,
                pad_id=pad_id,
                max_length=max_length,
                source=source_name or str(src),
                revision=revision or _snapshot_revision(src_dir),
                exporter=EXPORTER_VERSION,
            ).write(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.chmod(0o755)  # mkdtemp makes it private; an export is meant to be shared
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _export_cpu_graphs(
    src_dir: Path, staging: Path, dtypes: list[Dtype], layout: str, *, yes_id: int, no_id: int
) -> list[GraphEntry]:
    """One graph per dtype into `staging`; int8 is the f32 graph quantized, and f32 only stays if it was asked for."""
    entries = []
    # Calibrate before any export: the exporter keeps its last model alive until the next one (about the f32
    # weights), and calibration loads the f32 checkpoint — together they would double the peak.
    maxima = down_input_maxima(src_dir) if Dtype.INT8 in dtypes else None
    for dtype in dtypes:
        log.info("exporting %s graph of %s", dtype.value, src_dir)
        target = staging / GRAPH_NAMES[dtype]
        weight_bits = None
        if dtype is Dtype.INT8:
            f32 = staging / GRAPH_NAMES[Dtype.F32]
            if not f32.exists():
                _export_graph(src_dir, f32, Dtype.F32, yes_id, no_id, layout)
            config = json.loads((src_dir / "config.json").read_text())
            weight_bits = int8_weight_bits()
            layers = config["num_hidden_layers"]
            quantize_int8(f32, target, layers, down_input_max=maxima, weight_bits=weight_bits)
        else:
            _export_graph(src_dir, target, dtype, yes_id, no_id, layout)
        entries.append(GraphEntry(file=target.name, dtype=dtype, layout=layout, weight_bits=weight_bits))
    if Dtype.F32 not in dtypes:  # f32 was only the input of quantization
        for f in staging.glob(GRAPH_NAMES[Dtype.F32] + "*"):  # model.onnx, model.onnx.data
            f.unlink()
    return entries


def _snapshot_revision(src_dir: Path) -> str | None:
    """The commit hash when `src_dir` is a Hub cache snapshot (…/snapshots/<sha>), else None."""
    return src_dir.name if src_dir.parent.name == "snapshots" else None
