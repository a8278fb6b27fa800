"""Export a Hugging Face Qwen3-Reranker checkpoint to a lean ONNX graph: one logit (l_yes − l_no) per row."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .dtypes import Dtype
from .errors import ModelFormatError
from .hub import resolve_model_dir
from .manifest import Manifest
from .model_files import CHECKPOINT_PATTERNS
from .quantize import quantize_int8
from .tokenization import DEFAULT_MAX_LENGTH

log = logging.getLogger(__name__)

# Bump when the graphs change: cached exports (export_cache.py) are keyed by it.
EXPORTER_VERSION = "5"
GRAPH_NAMES = {Dtype.F32: "model.onnx", Dtype.F16: "model_f16.onnx", Dtype.INT8: "model_int8.onnx"}
# The GPU graphs (right padding, fused causal attention); f32 exists to check them on a CPU.
CUDA_GRAPH_NAMES = {Dtype.F32: "model_cuda.onnx", Dtype.F16: "model_cuda_f16.onnx"}
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


def _heads(torch):
    """Wrappers that put a scoring head on a Qwen3 body; built lazily so torch stays an optional import."""

    class LastTokenLogit(torch.nn.Module):
        """input_ids, attention_mask → l_yes − l_no at the last position; only that position is normed and projected."""

        def __init__(self, causal_lm, yes_id: int, no_id: int):
            super().__init__()
            self.body = causal_lm.model
            self.final_norm = self.body.norm
            self.body.norm = torch.nn.Identity()  # normed below, on the last position only
            weight = causal_lm.lm_head.weight
            self.register_buffer("direction", (weight[yes_id] - weight[no_id]).detach().clone())

        def forward(self, input_ids, attention_mask):
            """[batch] float32 logits l_yes − l_no at the last position."""
            hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            last = self.final_norm(hidden[:, -1, :])
            return (last @ self.direction).float()

    class FullLogits(torch.nn.Module):
        """The naive graph third parties ship: full [batch, seq, vocab] logits, with position_ids as an input."""

        def __init__(self, causal_lm):
            super().__init__()
            self.lm = causal_lm

        def forward(self, input_ids, attention_mask, position_ids):
            """[batch, seq, vocab] float32 logits."""
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
            return out.logits.float()

    class RightPaddedHead(torch.nn.Module):
        """A Qwen3 body and the yes−no direction; subclasses read the logit at each row's `last_index`."""

        def __init__(self, causal_lm, yes_id: int, no_id: int):
            super().__init__()
            self.body = causal_lm.model
            weight = causal_lm.lm_head.weight
            self.register_buffer("direction", (weight[yes_id] - weight[no_id]).detach().clone())

    class CausalLastTokenLogit(RightPaddedHead):
        """input_ids (right-padded), last_index → l_yes − l_no at each row's last real token.

        The GPU graph: with right padding a causal mask alone is exact (real tokens never see the pads after
        them), so attention is one `scaled_dot_product_attention(is_causal=True)` per layer, exported as ONNX's
        fused `Attention` op (opset 23, grouped KV heads) with no mask tensor to build; positions are 0..S-1 for
        every row. Pad rows' outputs are never read.
        """

        def forward(self, input_ids, last_index):
            """[batch] float32 logits l_yes − l_no at position last_index of each row."""
            hidden, cos, sin = _embed(self.body, input_ids, 0)
            for layer in self.body.layers:
                q, k, v = _qkv(layer.self_attn, layer.input_layernorm(hidden), cos, sin)
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, is_causal=True, scale=layer.self_attn.scaling, enable_gqa=True
                )
                hidden = _finish_layer(layer, hidden, out)
            return _logit_at(self.body, hidden, last_index, self.direction)

    class PrefixLastTokenLogit(RightPaddedHead):
        """input_ids (right-padded continuation), last_index, past K/V of a shared prefix → logit and the new K/V.

        Every row continues the same prefix: past_key_i/past_value_i are [1, kv_heads, P, head_dim] and broadcast
        over the batch; positions are P..P+S-1; token i sees the whole prefix and tokens ≤ i of its own row (right
        padding: pads come after every real token, so they change nothing). With P = 0 this is the whole
        sequence. Outputs key_i/value_i ([batch, kv_heads, S, head_dim]) extend a prefix for the next call.
        """

        def forward(self, input_ids, last_index, past):
            """(logit [batch], key_0, value_0, key_1, …) for continuations of the prefix whose K/V is `past`."""
            batch, seq = input_ids.shape
            past_len = past[0].shape[2]
            hidden, cos, sin = _embed(self.body, input_ids, past_len)
            own = torch.arange(seq, device=input_ids.device).unsqueeze(1)
            visible = torch.arange(past_len + seq, device=input_ids.device).unsqueeze(0) <= own + past_len
            present = []
            for i, layer in enumerate(self.body.layers):
                q, k, v = _qkv(layer.self_attn, layer.input_layernorm(hidden), cos, sin)
                present += [k, v]
                k = torch.cat([past[2 * i].expand(batch, -1, -1, -1), k], dim=2)
                v = torch.cat([past[2 * i + 1].expand(batch, -1, -1, -1), v], dim=2)
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, attn_mask=visible, scale=layer.self_attn.scaling, enable_gqa=True
                )
                hidden = _finish_layer(layer, hidden, out)
            return (_logit_at(self.body, hidden, last_index, self.direction), *present)

    def _embed(body, input_ids, start):
        """Token embeddings and the rotary cos/sin of positions start..start+S-1, one row of them per batch row."""
        hidden = body.embed_tokens(input_ids)
        positions = (torch.arange(input_ids.shape[1], device=input_ids.device) + start).unsqueeze(0)
        cos, sin = body.rotary_emb(hidden, positions)
        # One row of cos/sin per batch row: ONNX Runtime's RotaryEmbedding (which the exporter may fuse this into)
        # does not broadcast them over the batch.
        batch = input_ids.shape[0]
        return hidden, cos.expand(batch, -1, -1).unsqueeze(1), sin.expand(batch, -1, -1).unsqueeze(1)

    def _qkv(attn, x, cos, sin):
        shape = (*x.shape[:-1], -1, attn.head_dim)
        q = attn.q_norm(attn.q_proj(x).view(shape)).transpose(1, 2)
        k = attn.k_norm(attn.k_proj(x).view(shape)).transpose(1, 2)
        v = attn.v_proj(x).view(shape).transpose(1, 2)
        return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin, v

    def _finish_layer(layer, hidden, attended):
        """Residual adds around the attention output projection and the MLP."""
        shape = hidden.shape
        hidden = hidden + layer.self_attn.o_proj(attended.transpose(1, 2).reshape(*shape[:-1], -1))
        return hidden + layer.mlp(layer.post_attention_layernorm(hidden))

    def _logit_at(body, hidden, last_index, direction):
        index = last_index.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        last = body.norm(torch.gather(hidden, 1, index).squeeze(1))
        return (last @ direction).float()

    def _rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    return LastTokenLogit, FullLogits, CausalLastTokenLogit, PrefixLastTokenLogit


def _load(src_dir: Path, dtype: Dtype):
    torch, transformers = _require_torch()
    config = transformers.AutoConfig.from_pretrained(src_dir)
    if config.model_type != "qwen3":
        raise ModelFormatError(f"{src_dir} holds a {config.model_type!r} model; the exporter handles Qwen3 (qwen3)")
    torch_dtype = torch.float16 if dtype is Dtype.F16 else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch_dtype, attn_implementation="sdpa")
    return torch, model.eval()


def _sample_inputs(torch, model, kind: str) -> dict:
    ids = torch.randint(0, min(model.config.vocab_size, 1000), (2, 16), generator=torch.Generator().manual_seed(0))
    if kind in ("cuda", "kv"):
        inputs = {"input_ids": ids, "last_index": torch.tensor([15, 9])}  # right padding: row 1 has 10 real tokens
        if kind == "kv":
            cfg = model.config
            shape = (1, cfg.num_key_value_heads, 7, getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads))
            dtype = next(model.parameters()).dtype
            inputs["past"] = tuple(torch.randn(shape, dtype=dtype) for _ in range(2 * cfg.num_hidden_layers))
        return inputs
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # trace with left padding present
    inputs = {"input_ids": ids, "attention_mask": mask}
    if kind == "full_logits":
        inputs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
    return inputs


def kv_names(num_layers: int, prefix: str = "past_") -> list[str]:
    """Names of the K/V inputs (prefix 'past_') or outputs (prefix '') of a past-K/V graph, in layer order."""
    return [f"{prefix}{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]


def _export_graph(src_dir: Path, out_file: Path, dtype: Dtype, yes_id: int, no_id: int, kind: str = "kv") -> None:
    """Export one graph: kind 'kv' (right padding, past K/V of a shared prefix), 'plain' (left padding, mask),
    'cuda' (right padding, fused causal attention) or 'full_logits' (the third-party layout)."""
    torch, model = _load(src_dir, dtype)
    LastTokenLogit, FullLogits, CausalLastTokenLogit, PrefixLastTokenLogit = _heads(torch)
    modules = {"full_logits": lambda: FullLogits(model), "cuda": lambda: CausalLastTokenLogit(model, yes_id, no_id),
               "kv": lambda: PrefixLastTokenLogit(model, yes_id, no_id), "plain": lambda: LastTokenLogit(model, yes_id, no_id)}
    module = modules[kind]()
    inputs = _sample_inputs(torch, model, kind)
    batch, seq, past = torch.export.Dim("batch"), torch.export.Dim("seq"), torch.export.Dim("past")
    shapes = {name: {0: batch} if tensor.dim() == 1 else {0: batch, 1: seq}
              for name, tensor in inputs.items() if name != "past"}
    input_names, output_names = list(shapes), ["logits" if kind == "full_logits" else "logit"]
    if kind == "kv":
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
            opset_version=CUDA_OPSET if kind in ("cuda", "kv") else OPSET,
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
    past_kv: bool = True,
) -> Path:
    """Export checkpoint `src` (folder or Hub id) to `out_dir`: one graph per dtype, tokenizer, config, manifest.

    `cuda_dtypes` (f16, f32) adds the GPU graphs: right padding and ONNX's fused Attention, which `device: cuda`
    loads in place of the CPU graph of the same dtype.
    `past_kv` (default) makes the graphs take the K/V of a shared prefix, so each query's prompt runs once per call
    (prefix sharing); `past_kv=False` writes plain graphs (input_ids, attention_mask → logit) for other runtimes.
    `full_logits=True` writes instead the naive [batch, seq, vocab] graph laid out like third-party exports
    (no manifest); it exists for tests and benchmarks. `source_name` replaces `src` as the recorded source.
    """
    wanted = list(dict.fromkeys(Dtype.parse(d) for d in dtypes))
    wanted_cuda = list(dict.fromkeys(Dtype.parse(d) for d in cuda_dtypes))
    if unsupported := [d.value for d in wanted_cuda if d not in CUDA_GRAPH_NAMES]:
        raise ValueError(f"cuda_dtypes: no GPU graph for {unsupported}; choose from f16, f32")
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
        graphs: dict[str, str] = {}
        kind = "kv" if past_kv else "plain"
        if full_logits:
            _export_graph(src_dir, staging / "model.onnx", Dtype.F32, yes_id, no_id, kind="full_logits")
            (staging / "tokenizer_config.json").write_text(json.dumps({"pad_token": hf_tokenizer.pad_token}))
        else:
            for dtype in wanted:
                log.info("exporting %s graph of %s", dtype.value, src)
                target = staging / GRAPH_NAMES[dtype]
                if dtype is Dtype.INT8:
                    f32 = staging / GRAPH_NAMES[Dtype.F32]
                    if not f32.exists():
                        _export_graph(src_dir, f32, Dtype.F32, yes_id, no_id, kind)
                    config = json.loads((src_dir / "config.json").read_text())
                    quantize_int8(f32, target, config["num_hidden_layers"])
                else:
                    _export_graph(src_dir, target, dtype, yes_id, no_id, kind)
                graphs[dtype.value] = target.name
            cuda_graphs: dict[str, str] = {}
            for dtype in wanted_cuda:
                log.info("exporting %s GPU graph of %s", dtype.value, src)
                _export_graph(src_dir, staging / CUDA_GRAPH_NAMES[dtype], dtype, yes_id, no_id, kind="cuda")
                cuda_graphs[dtype.value] = CUDA_GRAPH_NAMES[dtype]
            if Dtype.F32 not in wanted:  # f32 was only the input of quantization
                for f in staging.glob(GRAPH_NAMES[Dtype.F32] + "*"):  # model.onnx, model.onnx.data
                    f.unlink()
            Manifest(
                graphs=graphs,
                cuda_graphs=cuda_graphs,
                past_kv=past_kv,
                yes_id=yes_id,
                no_id=no_id,
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


def _snapshot_revision(src_dir: Path) -> str | None:
    """The commit hash when `src_dir` is a Hub cache snapshot (…/snapshots/<sha>), else None."""
    return src_dir.name if src_dir.parent.name == "snapshots" else None
