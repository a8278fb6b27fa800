"""Qwen3-Reranker scoring on ONNX Runtime: our last-token graph, or a third-party full-logits graph."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..dtypes import Dtype, choose_dtype
from ..errors import ModelFormatError
from ..formatting import PREFIX, SUFFIX, content_head, format_content
from ..manifest import Manifest
from ..model_files import available_graphs, not_a_model
from ..prefix_sharing import plan_prefix_groups
from ..scorer import Pair, Prepared, Scorer, ScoreOutput, Truncation, split_output, validate_pairs
from ..tokenization import DEFAULT_MAX_LENGTH, EncodedPairs, PairTokenizer
from .past_kv import PastKv, PastKvGraph

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
    raise ImportError("the ONNX backend needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)") from exc

log = logging.getLogger(__name__)

# Rows × longest sequence per model call. Small calls stay in the CPU's caches: on the 0.6B shape, int8 scores
# 13% more pairs/s at 256 tokens per call than at 512 and 29% more than at 1024 (f32: within ±3% of 512);
# a GPU wants large calls.
CPU_TOKEN_BUDGET = 256
GPU_TOKEN_BUDGET = 16384
DEFAULT_MAX_BATCH_SIZE = 32
# A full-logits graph materialises [batch, seq, vocab] float32: keep one call's logits under this many bytes.
FULL_LOGITS_BYTES = 1 << 30
_SUPPORTED_INPUTS = {"input_ids", "attention_mask", "position_ids", "last_index"}


def cuda_available() -> bool:
    """True when this onnxruntime build has the CUDA provider (onnxruntime-gpu)."""
    return "CUDAExecutionProvider" in ort.get_available_providers()


def resolve_device(device: str) -> str:
    """'cuda' or 'cpu' for a device setting of 'auto', 'cpu' or 'cuda' (cuda without CUDA falls back to CPU)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    return "cuda" if device != "cpu" and cuda_available() else "cpu"


def select_providers(device: str) -> list[str]:
    """ONNX Runtime providers for `device` ('auto', 'cpu' or 'cuda'); CUDA only where this install has it."""
    if resolve_device(device) == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        log.warning("device=cuda but this onnxruntime has no CUDA provider (install onnxruntime-gpu); using CPU")
    return ["CPUExecutionProvider"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 out."""
    return (0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))).astype(np.float32)


def _find_graph(folder: Path, dtype: Dtype | None, device: str, variant: str) -> tuple[Path, Dtype, bool]:
    """(graph file, dtype, right-padded GPU graph?) for the settings; variant 'auto' takes the GPU graph on CUDA."""
    graphs = available_graphs(folder)
    if not graphs:
        raise not_a_model(folder, "model folder")
    if variant not in ("auto", "cpu", "cuda"):
        raise ValueError(f"graph_variant: expected 'auto', 'cpu' or 'cuda', got {variant!r}")
    manifest = Manifest.read(folder)
    cuda_graphs = {Dtype(d): folder / name for d, name in (manifest.cuda_graphs if manifest else {}).items()
                   if (folder / name).is_file()}
    on_cuda = resolve_device(device) == "cuda"
    use_cuda = variant == "cuda" or (variant == "auto" and on_cuda and bool(cuda_graphs))
    candidates = cuda_graphs if use_cuda else graphs
    dtype = choose_dtype(candidates or graphs, resolve_device(device)) if dtype is None else Dtype.parse(dtype)
    if variant == "auto" and use_cuda and dtype not in cuda_graphs:
        candidates, use_cuda = graphs, False  # no GPU graph of this dtype: the CPU-layout graph runs on CUDA too
    if dtype not in candidates:
        kind, flag = ("GPU", f"--cuda-dtype {dtype.value}") if use_cuda else ("", f"--dtype {dtype.value}")
        raise ModelFormatError(
            f"{folder} has no {dtype.value} {kind} graph; it has {sorted(d.value for d in candidates)} "
            f"(export one with: rerank export SRC --out DIR {flag})".replace("  ", " ")
        )
    return candidates[dtype], dtype, use_cuda


def _third_party_ids(folder: Path, tokenizer: PairTokenizer) -> tuple[int, int, int]:
    """yes/no/pad ids of a folder without our manifest, read the way the official recipe does."""
    yes_id, no_id = tokenizer.token_id("yes"), tokenizer.token_id("no")
    if yes_id is None or no_id is None:
        raise ModelFormatError(f"{folder}/tokenizer.json has no single 'yes'/'no' tokens: not a Qwen3 reranker")
    pad_token = "<|endoftext|>"
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        pad = json.loads(config_path.read_text()).get("pad_token")
        pad_token = pad.get("content", pad_token) if isinstance(pad, dict) else (pad or pad_token)
    pad_id = tokenizer.token_id(pad_token)
    return yes_id, no_id, 0 if pad_id is None else pad_id


class OnnxQwen3Scorer(Scorer):
    """Scores pairs with a Qwen3-Reranker ONNX export in a local folder.

    Example:
        >>> from rerank_core.testing import tiny_model_dir
        >>> scorer = OnnxQwen3Scorer(tiny_model_dir())
        >>> scorer.score([("what is ML?", "Machine learning is a subset of AI.")]).shape
        (1,)
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        dtype: Dtype | str | None = None,
        device: str = "auto",
        intra_op_threads: int | None = None,
        max_length: int | None = None,
        token_budget: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        model_name: str | None = None,
        instruction: str | None = None,
        graph_variant: str = "auto",
        share_prefix: bool = True,
    ):
        folder = Path(model_dir)
        if not folder.is_dir():
            raise ModelFormatError(f"model folder {folder} does not exist")
        manifest = Manifest.read(folder)
        graph, dtype, self.right_padded = _find_graph(folder, dtype, device, graph_variant)
        tokenizer_path = next((p for p in (folder / "tokenizer.json", graph.parent / "tokenizer.json") if p.is_file()), None)
        if tokenizer_path is None:
            raise ModelFormatError(f"{folder} lacks tokenizer.json")
        if (token_budget is not None and token_budget < 1) or max_batch_size < 1:
            raise ValueError("token_budget and max_batch_size must be ≥ 1")

        limit = max_length or (manifest.max_length if manifest else DEFAULT_MAX_LENGTH)
        prefix, suffix = (manifest.prefix, manifest.suffix) if manifest else (PREFIX, SUFFIX)
        probe = PairTokenizer.from_file(tokenizer_path, pad_id=0, max_length=limit, prefix=prefix, suffix=suffix)
        if manifest:
            self.yes_id, self.no_id, pad_id = manifest.yes_id, manifest.no_id, manifest.pad_id
        else:
            self.yes_id, self.no_id, pad_id = _third_party_ids(folder, probe)
        self.tokenizer = PairTokenizer.from_file(tokenizer_path, pad_id=pad_id, max_length=limit, prefix=prefix, suffix=suffix)

        self.session = self._open_session(graph, device, intra_op_threads)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self._inputs = {i.name for i in self.session.get_inputs()}
        past_kv = bool(manifest and manifest.past_kv and not self.right_padded)  # GPU graphs take no K/V
        self._past_kv = PastKvGraph(self.session) if past_kv else None
        self.right_padded = self.right_padded or past_kv
        unknown = self._inputs - _SUPPORTED_INPUTS - (set(self._past_kv.input_names) if past_kv else set())
        if unknown:
            raise ModelFormatError(
                f"{graph} needs inputs {sorted(unknown)}; only {sorted(_SUPPORTED_INPUTS)} are supported "
                "(export it without a KV cache, or use: rerank export)"
            )
        outputs = {o.name for o in self.session.get_outputs()}
        if token_budget is None:
            token_budget = GPU_TOKEN_BUDGET if self.device == "cuda" else CPU_TOKEN_BUDGET
        self.token_budget, self.max_batch_size = token_budget, max_batch_size
        if "logit" in outputs:
            self._output, self._full_logits = "logit", False
        elif "logits" in outputs:
            self._output, self._full_logits = "logits", True
            vocab = next(o.shape[-1] for o in self.session.get_outputs() if o.name == "logits")
            vocab = vocab if isinstance(vocab, int) else max(self.yes_id, self.no_id) + 1
            self.token_budget = min(token_budget, max(1, FULL_LOGITS_BYTES // (4 * vocab)))
            log.warning(
                "%s is a full-logits graph: scores are correct but it computes [batch, seq, vocab] logits, so it is "
                "slower and the token budget is capped at %d; `rerank export` makes a last-token graph",
                graph,
                self.token_budget,
            )
        else:
            raise ModelFormatError(f"{graph} has outputs {sorted(outputs)}; expected 'logit' or 'logits'")
        self.graph_path = graph
        self.dtype = dtype
        # Prefix sharing: the system prompt's K/V is computed here once; each call's shared query prefixes once.
        self.shares_prefix = share_prefix and past_kv
        if past_kv:
            self._system_kv = self._system_prompt_kv()
        self.model_name = model_name or (manifest.source if manifest else folder.name)
        self.instruction = instruction

    @staticmethod
    def _open_session(graph: Path, device: str, intra_op_threads: int | None) -> ort.InferenceSession:
        providers = select_providers(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        # Idle threads yield instead of spinning: no slower here (bench/session_options.py), and the CPU goes
        # to Ray's proxy and raylet instead of a busy-wait.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(graph), sess_options=options, providers=providers)
        if providers[0] == "CUDAExecutionProvider" and session.get_providers()[0] != "CUDAExecutionProvider":
            log.warning("the CUDA provider could not start (no GPU or driver?); running on CPU")
        return session

    def replace_session(self, session: ort.InferenceSession) -> None:
        """Run on `session`: the same graph opened with other options or another runtime (tuning, profiling)."""
        self.session = session
        if self._past_kv is not None:
            self._past_kv = PastKvGraph(session)
            self._system_kv = self._system_prompt_kv()

    def _system_prompt_kv(self) -> PastKv:
        """The system prompt's K/V when sharing prefixes (computed once per session), else the empty prefix."""
        empty = self._past_kv.empty
        return self._past_kv.extend(empty, self.tokenizer.prefix_ids, self.token_budget) if self.shares_prefix else empty

    def prepare(
        self, pairs: Sequence[Pair], *, instruction: str | None = None, truncation: Truncation = "right"
    ) -> Prepared:
        """Validate and tokenize pairs (content cut to max_length from the right, or from the document's start)."""
        pairs = validate_pairs(pairs)
        instruction = self.instruction if instruction is None else instruction
        contents = [format_content(q, d, instruction) for q, d in pairs]
        heads = [content_head(q, instruction) for q, _ in pairs]
        encoded = self.tokenizer.encode(contents, heads, keep_heads=truncation == "left")
        return Prepared(pairs, instruction, encoded.lengths, encoded.truncated, encoded)

    def score_prepared(self, items: Sequence[Prepared], *, batch_size: int | None = None) -> list[ScoreOutput]:
        """Score prepared requests in shared token-budget batches of similar length; results in input order."""
        encoded = EncodedPairs.concat([item.payload for item in items])
        rows = batch_size or self.max_batch_size
        if self._past_kv is not None:
            logits = self._score_continuations(encoded, rows)
        else:
            logits = np.zeros(len(encoded.ids), dtype=np.float32)
            for batch in self.tokenizer.batches(encoded.ids, self.token_budget, rows, right_padding=self.right_padded):
                logits[batch.indices] = self._run(batch.input_ids, batch.attention_mask)
        out = ScoreOutput(scores=sigmoid(logits), tokens=encoded.lengths, truncated=encoded.truncated, logits=logits)
        return split_output(out, [len(item) for item in items])

    def _score_continuations(self, encoded: EncodedPairs, rows: int) -> np.ndarray:
        """Past-K/V graph: each shared prefix runs once, then its rows' remaining tokens in token-budget batches.

        The budget counts only the tokens computed, and a prefix is at most one budget long (its K/V bounded).
        """
        logits = np.zeros(len(encoded.ids), dtype=np.float32)
        base = self._system_kv.length
        heads = encoded.heads if self.shares_prefix else None
        for group in plan_prefix_groups(encoded.ids, heads, base, max_prefix=max(self.token_budget, base)):
            first = encoded.ids[group.rows[0]]
            past = self._past_kv.extend(self._system_kv, first[base : group.length], self.token_budget)
            rest = [encoded.ids[r][group.length :] for r in group.rows]
            for batch in self.tokenizer.batches(rest, self.token_budget, rows, right_padding=True):
                last = batch.attention_mask.sum(axis=1) - 1
                logits[group.rows[batch.indices]] = self._past_kv.score(batch.input_ids, last, past)
        return logits

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.right_padded:
            feed = {"input_ids": input_ids, "last_index": attention_mask.sum(axis=1) - 1}
            return self.session.run([self._output], feed)[0].astype(np.float32)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "position_ids" in self._inputs:
            feed["position_ids"] = np.clip(np.cumsum(attention_mask, axis=1) - 1, 0, None)
        (out,) = self.session.run([self._output], feed)
        if self._full_logits:
            last = out[:, -1, :]
            return (last[:, self.yes_id] - last[:, self.no_id]).astype(np.float32)
        return out.astype(np.float32)
