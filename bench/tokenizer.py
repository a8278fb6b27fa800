"""The fast BPE path (rerank_core/fast_bpe.py) against `tokenizers` itself, side by side on Qwen's real vocabulary:
formatted pairs of 220 English words, and the same count of mixed-script text (the tests' fuzzer); each row
checks the ids are the same.

Run: python bench/tokenizer.py [--pairs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import WORDS, cpu_description, print_table


def best_rate(encode, texts: list[str], rounds: int) -> float:
    """Texts per second, the best of `rounds` runs."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        encode(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    """Print one table: texts/s of each encoder on each kind of text."""
    from rerank_core.families.qwen3.template import format_content
    from rerank_core.fast_bpe import fast_bpe
    from rerank_core.qwen_tokenizer import qwen_tokenizer
    from tests.rerank_core.test_fast_bpe import fuzzed_texts

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    tokenizer = qwen_tokenizer()
    start = time.perf_counter()
    fast = fast_bpe(tokenizer)
    built = time.perf_counter() - start
    rng = random.Random(0)
    query = "what do these documents say about the weather and the market?"
    english = [format_content(query, " ".join(rng.choice(WORDS) for _ in range(220))) for _ in range(args.pairs)]
    mixed = [format_content(query, text) for text in fuzzed_texts(args.pairs, seed=7)]
    encoders = {
        f"tokenizers encode_batch ({os.cpu_count()} threads)": lambda t: tokenizer.encode_batch(
            t, add_special_tokens=False
        ),
        "tokenizers encode_batch_fast (no offsets)": lambda t: tokenizer.encode_batch_fast(t, add_special_tokens=False),
        "fast BPE path (1 thread)": fast.encode_batch,
    }
    rows = []
    for kind, texts in (("English, 220 words a document", english), ("mixed scripts (the tests' fuzzer)", mixed)):
        expected = [enc.ids for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]
        tokens = sum(map(len, expected)) / len(texts)
        same = fast.encode_batch(texts) == expected
        reference = None
        for name, encode in encoders.items():
            rate = best_rate(encode, texts, args.rounds)
            reference = reference or rate
            rows.append([kind, f"{tokens:.0f}", name, rate, rate / reference, "yes" if same else "NO"])
    print_table(
        f"Tokenizing formatted pairs, Qwen's vocabulary ({args.pairs} pairs, best of {args.rounds}; fast path built in "
        f"{built:.2f} s); {cpu_description()}",
        ["text", "tokens/pair", "encoder", "pairs/s", "× tokenizers", "fast ids = tokenizers ids"],
        rows,
    )


if __name__ == "__main__":
    main()
