"""Qwen3's own tokenizer, rebuilt offline from the BPE ranks the `dashscope` SDK ships (`resources/qwen.tiktoken`).

151,643 byte-level BPE ranks ("yes" = 9693, "no" = 2152, the ids Qwen3-Reranker scores), Qwen's split pattern (single
digits), an NFC normalizer and Qwen3's 26 added tokens (151643 `<|endoftext|>` … 151668 `</think>`): the same ids as
Qwen3's tokenizer.json, so the models built with it count, truncate and share prefixes exactly as the real one does.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, normalizers

# Qwen2/Qwen3's pre-tokenizer split; unlike tiktoken's cl100k it keeps digits apart (\p{N}, not \p{N}{1,3}).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
FIRST_ADDED_ID = 151643
# Qwen3's added tokens from FIRST_ADDED_ID on, and whether each is `special` (skipped when decoding).
ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
VOCAB_SIZE = FIRST_ADDED_ID + len(ADDED_TOKENS)  # 151669, the vocabulary Qwen3-Reranker-0.6B's embedding covers


def ranks_file() -> Path:
    """The BPE ranks file inside the dashscope package (an ImportError naming the extra when it is missing)."""
    # Found without importing the SDK: its __init__ pulls in its HTTP clients, which a tokenizer does not need.
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("Qwen's vocabulary comes with the dashscope extra: pip install 'qwen-rerank[dashscope]'")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"


def qwen_tokenizer():
    """A `tokenizers.Tokenizer` with Qwen3's vocabulary, merges, pre-tokenizer, normalizer and added tokens (a new
    object each call, read from the one this process built)."""
    return Tokenizer.from_str(_qwen_tokenizer_json())


@functools.cache
def _qwen_tokenizer_json() -> str:
    """Qwen3's tokenizer as JSON, built once per process from the ranks (~5 s)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter  # the export extra

    path = ranks_file()
    tokenizer = TikTokenConverter(vocab_file=str(path), pattern=SPLIT_PATTERN).converted()
    tokenizer.model.ignore_merges = False  # as Qwen's tokenizer.json: words are built by merges, never looked up whole
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.add_tokens([AddedToken(text, special=special, normalized=False) for text, special in ADDED_TOKENS])
    if tokenizer.token_to_id(ADDED_TOKENS[0][0]) != FIRST_ADDED_ID or tokenizer.get_vocab_size() != VOCAB_SIZE:
        raise AssertionError(f"{path} does not hold Qwen's {FIRST_ADDED_ID} ranks")
    return tokenizer.to_str()
