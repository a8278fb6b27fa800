"""A model folder read once: its graphs (file, dtype, layout), tokenizer, yes/no/pad ids, template and model type."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from tokenizers import Tokenizer

from ..dtypes import GRAPH_CANDIDATES, Dtype, choose_dtype, graph_dtype
from ..errors import ModelFormatError
from .manifest import Manifest

# graph_variant → the GPU graph layout it loads, and the `rerank export` flag that writes that layout.
GPU_LAYOUTS = {"cuda": "causal", "fused": "fused", "paged": "paged"}
EXPORT_FLAGS = {"causal": "--cuda-dtype", "fused": "--fused-dtype", "paged": "--paged-dtype"}

# What the exporter reads from a Hugging Face checkpoint (and all a Hub download of one needs to fetch).
CHECKPOINT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "tokenizer*")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
# What an export folder holds, for errors that say what was expected.
AN_EXPORT = (
    "an ONNX export (model.onnx or model_int8.onnx/model_f16.onnx with tokenizer.json, as `rerank export` writes)"
)


@dataclass(frozen=True)
class GraphFile:
    """One graph of a folder; `layout` None: a third-party graph, whose layout its inputs and outputs tell."""

    path: Path
    dtype: Dtype
    layout: str | None
    weight_bits: int | None = None  # int8 graphs: 8 or 7 (manifest.GraphEntry)

    @property
    def for_gpu(self) -> bool:
        """True for the GPU graphs (fused causal attention, no K/V between calls): layouts causal, fused and paged."""
        return self.layout in GPU_LAYOUTS.values()


@dataclass(frozen=True)
class ModelFolder:
    """Everything the ONNX backend needs from a folder, read once: `ModelFolder.read(path)`."""

    path: Path
    name: str  # what the model is called in answers and logs
    graphs: tuple[GraphFile, ...]
    tokenizer: Tokenizer
    yes_id: int
    no_id: int
    pad_id: int
    model_type: str | None = None  # config.json's, which chooses the model family; None: the folder has none
    # The template around each pair's content and the tokens per pair; None: the model family's.
    prefix: str | None = None
    suffix: str | None = None
    max_length: int | None = None

    @classmethod
    def read(cls, path: str | Path, name: str | None = None) -> ModelFolder:
        """Read `path`: our export (manifest) or a third-party one (known graph names, ids from the tokenizer)."""
        found = cls.find(path, name)
        if found is None:
            names = sorted(p.name for p in Path(path).iterdir())[:20]
            raise ModelFormatError(f"model folder: {path} holds files {names}; expected {AN_EXPORT}")
        return found

    @classmethod
    def find(cls, path: str | Path, name: str | None = None) -> ModelFolder | None:
        """`read`, or None for a folder that holds no graph (a PyTorch checkpoint, say)."""
        folder = Path(path)
        if not folder.is_dir():
            raise ModelFormatError(f"model folder {folder} does not exist")
        manifest = Manifest.read(folder)
        graphs = _graphs(folder, manifest)
        if not graphs:
            return None
        tokenizer_path = next(
            (p for p in dict.fromkeys([folder, *(g.path.parent for g in graphs)]) if (p / "tokenizer.json").is_file()),
            None,
        )
        if tokenizer_path is None:
            raise ModelFormatError(f"{folder} lacks tokenizer.json")
        tokenizer = Tokenizer.from_file(str(tokenizer_path / "tokenizer.json"))
        model_type = config_model_type(folder)
        if manifest is None:
            yes_id, no_id, pad_id = _third_party_ids(folder, tokenizer)
            return cls(folder, name or folder.name, graphs, tokenizer, yes_id, no_id, pad_id, model_type)
        return cls(
            folder,
            name or manifest.source,
            graphs,
            tokenizer,
            manifest.yes_id,
            manifest.no_id,
            manifest.pad_id,
            model_type,
            manifest.prefix,
            manifest.suffix,
            manifest.max_length,
        )

    def choose_graph(self, dtype: Dtype | None, device: str, variant: str = "auto") -> GraphFile:
        """The graph to run on `device` ('cpu' or 'cuda'): `variant` 'auto' takes a `causal` GPU graph on CUDA where
        the folder has one of the dtype, 'cuda' one anywhere, 'fused' or 'paged' a GPU graph of that layout
        anywhere, 'cpu' never;
        `dtype` None: the device's favourite (never bf16); bf16 (where the caller found this machine computes it):
        the f32 CPU graph, run in bf16."""
        if variant not in ("auto", "cpu", *GPU_LAYOUTS):
            raise ValueError(f"graph_variant: expected 'auto', 'cpu', 'cuda', 'fused' or 'paged', got {variant!r}")
        dtype = None if dtype is None else Dtype.parse(dtype)
        gpu_layout = GPU_LAYOUTS.get(variant, "causal")
        gpu = {g.dtype: g for g in self.graphs if g.layout == gpu_layout}
        cpu = {g.dtype: g for g in self.graphs if not g.for_gpu}
        if dtype is Dtype.BF16 and Dtype.F32 in cpu:
            cpu[Dtype.BF16] = replace(cpu[Dtype.F32], dtype=Dtype.BF16)
        use_gpu = variant in GPU_LAYOUTS or (variant == "auto" and device == "cuda" and bool(gpu))
        candidates = gpu if use_gpu else cpu
        dtype = choose_dtype(candidates or cpu, device) if dtype is None else dtype
        if variant == "auto" and use_gpu and dtype not in gpu:
            candidates, use_gpu = cpu, False  # no GPU graph of this dtype: the CPU-layout graph runs on CUDA too
        if dtype not in candidates:
            wanted = graph_dtype(dtype).value
            flag = EXPORT_FLAGS[gpu_layout] if use_gpu else "--dtype"
            kind = f"{gpu_layout} GPU " if use_gpu else ""
            raise ModelFormatError(
                f"{self.path} has no {dtype.value} {kind}graph; it has {sorted(d.value for d in candidates)} "
                f"(export one with: rerank export SRC --out DIR {flag} {wanted})"
            )
        return candidates[dtype]


def _graphs(folder: Path, manifest: Manifest | None) -> tuple[GraphFile, ...]:
    """The graphs `folder` holds: the manifest's, else the file names third-party exports use."""
    if manifest is not None:
        return tuple(
            GraphFile(folder / g.file, g.dtype, g.layout, g.weight_bits)
            for g in manifest.graphs
            if (folder / g.file).is_file()
        )
    found = []
    for dtype, names in GRAPH_CANDIDATES.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is not None:
            found.append(GraphFile(path, dtype, None))
    return tuple(found)


def _third_party_ids(folder: Path, tokenizer: Tokenizer) -> tuple[int, int, int]:
    """yes/no/pad ids of a folder without our manifest, read the way the official recipe does."""
    yes_id, no_id = tokenizer.token_to_id("yes"), tokenizer.token_to_id("no")
    if yes_id is None or no_id is None:
        raise ModelFormatError(f"{folder}/tokenizer.json has no single 'yes'/'no' tokens: not a Qwen3 reranker")
    pad_token = "<|endoftext|>"
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        pad = json.loads(config_path.read_text()).get("pad_token")
        pad_token = pad.get("content", pad_token) if isinstance(pad, dict) else (pad or pad_token)
    pad_id = tokenizer.token_to_id(pad_token)
    return yes_id, no_id, 0 if pad_id is None else pad_id


def graph_patterns() -> list[str]:
    """Hub download patterns for an ONNX export of any dtype: json files and every graph we can load."""
    return ["*.json", *(f"{name}*" for names in GRAPH_CANDIDATES.values() for name in names)]


def config_model_type(folder: Path) -> str | None:
    """`model_type` from a Hugging Face config.json in `folder`, or None when there is none."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        return None


def has_weights(folder: Path) -> bool:
    """True when `folder` holds PyTorch weights (safetensors or pytorch_model*.bin)."""
    return any(next(folder.glob(p), None) is not None for p in WEIGHT_PATTERNS)
