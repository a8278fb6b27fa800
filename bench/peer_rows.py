"""One benchmark row in a fresh process: load a scorer, score the pairs, print the timing and the scores as JSON.

Runs under our venv (ours, the official recipe) or a peer's own venv (sentence-transformers, vLLM), so it
imports each row's packages only when that row runs. Input (stdin, JSON): row, checkpoint, seq_cls, export,
pairs, threads, device, prefix, suffix, instruction. Output: one line `RESULT {load_s, seconds, scores,
peak_rss_gib}`. Also imported by bench/gpu/scoring.py for the sentence-transformers row.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

BATCH = 32  # the peers' batch size (CrossEncoder.predict's default)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for the official row's tests.oracle


def sentence_transformers_row(
    seq_cls: str, dtype: str, device: str, prefix: str, suffix: str, instruction: str, batch: int = BATCH
):
    """CrossEncoder on the seq-cls form: the model card's recipe, template head on the query, tail on the document."""
    import importlib.util

    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    attention = "flash_attention_2" if importlib.util.find_spec("flash_attn") and device == "cuda" else "sdpa"
    torch_dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    model = CrossEncoder(seq_cls, device=device, model_kwargs={"dtype": torch_dtype, "attn_implementation": attention})
    model.tokenizer.padding_side = "left"

    def score(pairs):
        texts = [(f"{prefix}<Instruct>: {instruction}\n<Query>: {q}\n", f"<Document>: {d}{suffix}") for q, d in pairs]
        return np.asarray(model.predict(texts, batch_size=batch, show_progress_bar=False), dtype=np.float32)

    return score


def vllm_row(
    checkpoint: str, dtype: str, prefix_caching: bool, prefix: str, suffix: str, instruction: str, max_len: int
):
    """vLLM's pooling runner with the Qwen3-Reranker overrides and templates its docs give, in `dtype` (float32,
    bfloat16)."""
    from vllm import LLM

    llm = LLM(
        model=checkpoint,
        runner="pooling",
        dtype=dtype,
        hf_overrides={
            "architectures": ["Qwen3ForSequenceClassification"],
            "classifier_from_token": ["no", "yes"],
            "is_original_qwen3_reranker": True,
        },
        enable_prefix_caching=prefix_caching,
        max_model_len=max_len,
        gpu_memory_utilization=0.5,  # on the CPU backend: the share of RAM it reserves (default 0.92 fails here)
        seed=0,
    )

    def score(pairs):
        queries = [f"{prefix}<Instruct>: {instruction}\n<Query>: {q}\n" for q, _ in pairs]
        documents = [f"<Document>: {d}{suffix}" for _, d in pairs]
        return [o.outputs.score for o in llm.score(queries, documents, use_tqdm=False)]

    return score


def make_row(spec: dict):
    """The scoring function `spec['row']` names."""
    row = spec["row"]
    if row == "official":
        from tests.oracle import OfficialRecipe

        recipe = OfficialRecipe(spec["checkpoint"], threads=spec["threads"])
        return lambda pairs: recipe.score(pairs, batch_size=8)
    if row.startswith("sentence-transformers"):
        import torch

        torch.set_num_threads(spec["threads"])
        return sentence_transformers_row(
            spec["seq_cls"],
            "bf16" if row.endswith("bf16") else "f32",
            spec["device"],
            spec["prefix"],
            spec["suffix"],
            spec["instruction"],
        )
    if row.startswith("vllm"):
        return vllm_row(
            spec["checkpoint"],
            "bfloat16" if "-bf16" in row else "float32",
            row.endswith("prefix-cache"),
            spec["prefix"],
            spec["suffix"],
            spec["instruction"],
            max_len=1024,
        )
    from rerank_core.backends.onnx import OnnxScorer

    _, dtype, *shared = row.split("-")  # ours-f32, ours-int8, ours-bf16-shared
    scorer = OnnxScorer.open(spec["export"], dtype=dtype, intra_op_threads=spec["threads"], share_prefix=bool(shared))
    return scorer.score


def main() -> None:
    """Read the spec, load (timed), warm up, score (timed), print RESULT."""
    spec = json.loads(sys.stdin.read())
    pairs = [tuple(p) for p in spec["pairs"]]
    started = time.perf_counter()
    score = make_row(spec)
    load_s = time.perf_counter() - started
    score(pairs[:2])
    started = time.perf_counter()
    scores = score(pairs)
    seconds = time.perf_counter() - started
    peak_kib = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM")
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "load_s": load_s,
                "seconds": seconds,
                "scores": [float(s) for s in scores],
                "peak_rss_gib": peak_kib / 2**20,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
