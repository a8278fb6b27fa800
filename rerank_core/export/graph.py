"""Export a Hugging Face reranker checkpoint to lean ONNX graphs, one logit (l_yes − l_no) per row: the driver every
family shares (which graph files, int8, the manifest, staging); the family traces its own heads."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..cpu import int8_weight_bits
from ..dtypes import Dtype, graph_dtype
from ..families import family_for
from ..families.base import FamilyExporter
from ..model_files.folder import CHECKPOINT_PATTERNS, config_model_type
from ..model_files.hub import resolve_model_dir
from ..model_files.manifest import GraphEntry, Manifest
from ..quiet_export import quiet_export
from .quantize import quantize_blocks_int8, quantize_int8

log = logging.getLogger(__name__)

# Bump when the graphs change: cached exports (export/cache.py) are keyed by it.
EXPORTER_VERSION = "12"  # 12: a VL vision encoder attends over all of a call's patches (one image a call)
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
# ONNX protobufs cannot exceed 2 GiB; above this many weight bytes the tensors go to an external file.
EXTERNAL_DATA_BYTES = 1_500_000_000


def _require_torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "exporting needs the export extra: pip install 'qwen-rerank[export]' (pins torch==2.13.0)"
        ) from exc
    return torch


def _export_graph(
    exporter: FamilyExporter, src_dir: Path, out_file: Path, dtype: Dtype, yes_id: int, no_id: int, layout: str
) -> None:
    """Export one graph of `layout` (the family's: past_kv, causal, fused, paged, plain or full_logits for Qwen3)."""
    with quiet_export():
        _export_quietly(exporter, src_dir, out_file, dtype, yes_id, no_id, layout)
    exporter.finish(layout, out_file)


def _export_quietly(
    exporter: FamilyExporter, src_dir: Path, out_file: Path, dtype: Dtype, yes_id: int, no_id: int, layout: str
) -> None:
    """_export_graph's work, under quiet_export."""
    torch = _require_torch()
    model = exporter.load(src_dir, dtype)
    trace = exporter.trace(model, layout, yes_id, no_id)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        torch.onnx.export(
            trace.module.eval(),
            trace.inputs,
            str(out_file),
            input_names=trace.input_names,
            output_names=trace.output_names,
            dynamic_shapes=trace.dynamic_shapes,
            opset_version=trace.opset,
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
    max_length: int | None = None,
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
    `max_length` None: the family's default tokens per pair. The checkpoint's config.json `model_type` chooses the
    family (rerank_core.families) that traces it.
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
    family = family_for(config_model_type(src_dir), str(src_dir))
    _require_torch()
    exporter = family.exporter()
    asked_gpu = [layout for layout, (_, dtypes) in gpu_graphs.items() if dtypes]
    if unsupported := [layout for layout in asked_gpu if layout not in exporter.gpu_layouts]:
        raise ValueError(f"{family.name} checkpoints have no {unsupported[0]} GPU graph yet; export CPU ones (--dtype)")
    hf_tokenizer, yes_id, no_id, pad_id = exporter.answer_ids(src_dir)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        hf_tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        shutil.copy(src_dir / "config.json", staging / "config.json")
        exporter.write_companions(src_dir, staging)
        if Dtype.INT8 in wanted:
            for f32_file, int8_file in exporter.int8_companions.items():
                quantize_blocks_int8(staging / f32_file, staging / int8_file)
        if full_logits:
            _export_graph(exporter, src_dir, staging / "model.onnx", Dtype.F32, yes_id, no_id, "full_logits")
            (staging / "tokenizer_config.json").write_text(json.dumps({"pad_token": hf_tokenizer.pad_token}))
        else:
            ids = {"yes_id": yes_id, "no_id": no_id}
            cpu_layout = exporter.cpu_layout(past_kv)
            graphs = _export_cpu_graphs(exporter, src_dir, staging, wanted, cpu_layout, **ids)
            for layout, (names, asked) in gpu_graphs.items():
                for dtype in asked:
                    log.info("exporting %s GPU graph (%s) of %s", dtype.value, layout, src)
                    _export_graph(exporter, src_dir, staging / names[dtype], dtype, yes_id, no_id, layout)
                    graphs.append(GraphEntry(file=names[dtype], dtype=dtype, layout=layout))
            Manifest(
                graphs=graphs,
                **ids,
                pad_id=pad_id,
                prefix=exporter.prefix,
                suffix=exporter.suffix,
                max_length=max_length or exporter.max_length,
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
    exporter: FamilyExporter,
    src_dir: Path,
    staging: Path,
    dtypes: list[Dtype],
    layout: str,
    *,
    yes_id: int,
    no_id: int,
) -> list[GraphEntry]:
    """One graph per dtype into `staging`; int8 is the f32 graph quantized, and f32 only stays if it was asked for."""
    entries = []
    # Calibrate before any export: the exporter keeps its last model alive until the next one (about the f32
    # weights), and calibration loads the f32 checkpoint — together they would double the peak.
    maxima = exporter.calibrate_int8(src_dir) if Dtype.INT8 in dtypes else None
    for dtype in dtypes:
        log.info("exporting %s graph of %s", dtype.value, src_dir)
        target = staging / GRAPH_NAMES[dtype]
        weight_bits = None
        if dtype is Dtype.INT8:
            f32 = staging / GRAPH_NAMES[Dtype.F32]
            if not f32.exists():
                _export_graph(exporter, src_dir, f32, Dtype.F32, yes_id, no_id, layout)
            weight_bits = int8_weight_bits()
            layers = len(maxima)  # one row of statistics per decoder layer
            quantize_int8(f32, target, layers, down_input_max=maxima, weight_bits=weight_bits)
        else:
            _export_graph(exporter, src_dir, target, dtype, yes_id, no_id, layout)
        entries.append(GraphEntry(file=target.name, dtype=dtype, layout=layout, weight_bits=weight_bits))
    if Dtype.F32 not in dtypes:  # f32 was only the input of quantization
        for f in staging.glob(GRAPH_NAMES[Dtype.F32] + "*"):  # model.onnx, model.onnx.data
            f.unlink()
    return entries


def _snapshot_revision(src_dir: Path) -> str | None:
    """The commit hash when `src_dir` is a Hub cache snapshot (…/snapshots/<sha>), else None."""
    return src_dir.name if src_dir.parent.name == "snapshots" else None
