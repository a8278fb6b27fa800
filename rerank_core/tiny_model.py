"""Deterministic random-weight Qwen3 rerankers for tests, demos and benchmarks (their scores mean nothing).

The tiny one ships in the package (`builtin:tiny-qwen3-reranker`: 2 layers, a 1024-token BPE trained here); the
full-size one has Qwen3-Reranker-0.6B's exact shape and Qwen's real vocabulary (`qwen_tokenizer.py`).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from .dtypes import Dtype
from .export import export_checkpoint
from .families.qwen3.template import DEFAULT_INSTRUCTION, PREFIX, SUFFIX
from .model_files.hub import ASSETS, BUILTIN_PREFIX
from .quiet_export import quiet_export
from .qwen_tokenizer import VOCAB_SIZE, qwen_tokenizer

TINY_NAME = "tiny-qwen3-reranker"
TINY_MODEL = BUILTIN_PREFIX + TINY_NAME
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    initializer_range=0.25,  # large enough that scores spread over 0..1
)
# Qwen3-Reranker-0.6B's exact shape: same FLOPs per token as the real model.
FULL_SIZE_SHAPE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    initializer_range=0.02,
)
TINY_VOCAB = 1024

_WORDS = (
    "the a of to and in is for on with as by at from that this it be are was not or an which can yes no cat dog sits "
    "outside man playing guitar pasta movie awesome garden woman watches tv pizza machine learning subset ai weather "
    "sunny today ml algorithms learn data food coffee brewed beans python programming language nice french press "
    "great beginners query document instruct judge requirements answer search retrieve relevant passages web given "
    "system user assistant think model rerank score capital france paris europe eiffel tower science history music "
    "sport"
).split()
_UNICODE = ["café", "naïve", "日本語", "中文检索", "ünïcödé", "emoji 🙂", "Ελληνικά", "русский"]


def tiny_model_dir() -> Path:
    """Folder of the tiny exported model shipped inside the package."""
    return ASSETS / TINY_NAME


def _corpus(n_lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = [PREFIX + f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: " + SUFFIX] * 50
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 16))]
        if rng.random() < 0.1:
            words.append(rng.choice(_UNICODE))
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ""]))
    lines += ["yes", "no"] * 200  # the answer tokens must be single vocabulary entries
    return lines


def build_tokenizer(seed: int = 0):
    """A byte-level BPE tokenizer trained on generated text, with Qwen's special tokens and single-token yes/no."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(4000, seed), trainer)
    for word in ("yes", "no"):
        if len(tokenizer.encode(word).ids) != 1:
            raise AssertionError(f"tiny tokenizer splits {word!r}; adjust the corpus")
    return tokenizer


def build_checkpoint(
    out_dir: str | Path,
    *,
    full_size: bool = False,
    vocabulary: Literal["tiny", "qwen"] | None = None,
    weights: Literal["float32", "bfloat16"] | None = None,
    shape: dict | None = None,
    seed: int = 0,
) -> Path:
    """Write a random-weight Hugging Face Qwen3 checkpoint (config, safetensors, tokenizer) to `out_dir`.

    `full_size`: Qwen3-Reranker-0.6B's shape, else 2 small layers. `vocabulary` 'qwen' is Qwen's real one
    (151,669 tokens: real token counts, truncation and prefix boundaries), 'tiny' a 1024-token BPE trained here;
    None: 'qwen' at full size, else 'tiny'. `weights`: the stored dtype; None: bfloat16 at full size (as Qwen
    publishes Qwen3-Reranker, so bf16 and f16 graphs round no weight), else float32. `shape`: Qwen3Config fields
    that replace the chosen shape's (e.g. the 0.6B's 16 query heads of 128 on a small model).
    """
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    vocabulary = vocabulary or ("qwen" if full_size else "tiny")
    tokenizer = qwen_tokenizer() if vocabulary == "qwen" else build_tokenizer(seed)
    base = dict(FULL_SIZE_SHAPE) if full_size else dict(TINY_SHAPE, vocab_size=tokenizer.get_vocab_size())
    shape = {**base, **(shape or {})}
    pad_id, eos_id = tokenizer.token_to_id("<|endoftext|>"), tokenizer.token_to_id("<|im_end|>")
    config = Qwen3Config(
        **shape,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
        max_position_embeddings=40960 if full_size else 8192,
        pad_token_id=pad_id,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    with torch.no_grad():  # norm weights start at 1; distinct ones make a swapped or skipped norm change scores
        for name, weight in model.named_parameters():
            if name.endswith("norm.weight"):
                weight.uniform_(0.5, 1.5)
    with quiet_export():  # no progress bar for a model this size
        model.to(getattr(torch, weights or ("bfloat16" if full_size else "float32"))).save_pretrained(out)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<|endoftext|>", eos_token="<|im_end|>", padding_side="left"
    ).save_pretrained(out)
    return out


def build_tiny_model(
    out_dir: str | Path,
    *,
    full_size: bool = False,
    dtypes: Iterable[Dtype | str] = (Dtype.F32,),
    overwrite: bool = False,
    seed: int = 0,
) -> Path:
    """Build a random Qwen3 reranker checkpoint and export it with the real exporter; returns the export folder."""
    work = Path(tempfile.mkdtemp(prefix="tiny-ckpt-"))
    try:
        build_checkpoint(work, full_size=full_size, seed=seed)
        name = "random-qwen3-reranker-0.6b-shape" if full_size else TINY_NAME
        return export_checkpoint(work, out_dir, dtypes=dtypes, overwrite=overwrite, source_name=name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
