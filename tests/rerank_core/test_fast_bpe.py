"""The fast BPE path gives exactly the ids `tokenizers` gives — on Qwen's vocabulary (merges laid out as our rebuild
and as Qwen's published tokenizer.json lay them out) and the tiny one — and tokenizers it cannot run fall back."""

import json
import random
import string

import pytest
from tokenizers import Tokenizer

from rerank_core.families.qwen3.encoder import PairTokenizer
from rerank_core.fast_bpe import byte_decoder, fast_bpe
from rerank_core.qwen_tokenizer import qwen_tokenizer
from rerank_core.tiny_model import tiny_model_dir

# Code point ranges the fuzzed texts draw from: ASCII most, then controls, Latin, combining marks, Greek, Cyrillic,
# Hebrew/Arabic, Devanagari, Thai, Hangul jamo, kana, CJK, Hangul, punctuation, ligatures, full width, emoji, tags,
# and anything up to U+10FFFF.
RANGES = [(0x20, 0x7E)] * 6 + [
    (0x0, 0x1F),
    (0xA0, 0x24F),
    (0x300, 0x36F),
    (0x370, 0x3FF),
    (0x400, 0x4FF),
    (0x590, 0x6FF),
    (0x900, 0x97F),
    (0xE00, 0xE7F),
    (0x1100, 0x11FF),
    (0x3040, 0x30FF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0x2000, 0x206F),
    (0xFB00, 0xFB4F),
    (0xFF00, 0xFFEF),
    (0x1F300, 0x1FAFF),
    (0xE0000, 0xE007F),
    (0x10000, 0x10FFFF),
]
WORDS = ["the", "machine", "learning", " data", "Qwen", "don't", "I'LL", "naïve", "café", "東京", "yes", "no"]
SPACES = [" ", "  ", "\n", "\r\n", "\t", " \n ", "\n\n\n", "   \t", "\u3000", "\xa0"]
ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|im_", "<|", "|>", "<tool_call>"]


def fuzzed_texts(count: int, seed: int) -> list[str]:
    """Texts of words, random code points (no surrogates), whitespace runs, numbers, added tokens and punctuation."""
    rng = random.Random(seed)

    def piece() -> str:
        k = rng.random()
        if k < 0.35:
            return rng.choice(WORDS) + rng.choice(["", " ", "  ", "\n", ", ", ". "])
        if k < 0.7:
            lo, hi = rng.choice(RANGES)
            points = (rng.randint(lo, hi) for _ in range(rng.randint(1, 6)))
            return "".join(chr(c) for c in points if not 0xD800 <= c <= 0xDFFF)
        if k < 0.8:
            return rng.choice(SPACES)
        if k < 0.88:
            return str(rng.randint(0, 10 ** rng.randint(1, 12)))
        if k < 0.93:
            return rng.choice(ADDED)
        return "".join(rng.choice(string.punctuation) for _ in range(rng.randint(1, 4)))

    return ["".join(piece() for _ in range(rng.randint(0, 60))) for _ in range(count)]


def one_merge_per_token(tokenizer: Tokenizer) -> Tokenizer:
    """`tokenizer` with one merge per token, as Qwen's published tokenizer.json has (151,387): the split BPE makes of
    each token's bytes with the ranks below its own — our rebuild lists every split instead."""
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    to_byte = byte_decoder()
    to_char = {b: c for c, b in to_byte.items()}
    ranks = {bytes(to_byte[c] for c in token): rank for token, rank in vocab.items()}

    def last_split(token: bytes) -> tuple[bytes, bytes]:
        parts, rank = [bytes([b]) for b in token], ranks[token]
        while len(parts) > 2:
            found = [(ranks.get(a + b, rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            best, i = min(found)
            assert best < rank, token
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return parts[0], parts[1]

    merges = []
    for token, _ in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            merges.append(["".join(to_char[b] for b in part) for part in last_split(token)])
    spec["model"]["merges"] = merges
    return Tokenizer.from_str(json.dumps(spec))


@pytest.fixture(scope="module")
def qwen():
    pytest.importorskip("dashscope")
    return qwen_tokenizer()


def tiny() -> Tokenizer:
    return Tokenizer.from_file(str(tiny_model_dir() / "tokenizer.json"))


def assert_same_ids(tokenizer: Tokenizer, texts: list[str]) -> None:
    fast = fast_bpe(tokenizer)
    assert fast is not None
    expected = [enc.ids for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]
    got = fast.encode_batch(texts)
    wrong = [i for i in range(len(texts)) if got[i] != expected[i]]
    assert not wrong, f"{len(wrong)} texts differ, first {texts[wrong[0]]!r}"


def test_the_fast_path_gives_the_tiny_tokenizers_ids():
    assert_same_ids(tiny(), fuzzed_texts(3000, seed=1))


def test_the_fast_path_gives_qwens_ids(qwen):
    assert_same_ids(qwen, fuzzed_texts(3000, seed=2))


def test_the_fast_path_gives_qwens_ids_with_one_merge_per_token_as_published(qwen):
    published = one_merge_per_token(qwen)
    assert len(json.loads(published.to_str())["model"]["merges"]) == 151_387
    assert_same_ids(published, fuzzed_texts(3000, seed=3))


def test_models_get_the_fast_path(qwen):
    assert PairTokenizer(tiny(), pad_id=0).fast
    assert PairTokenizer(qwen, pad_id=151643).fast


def with_spec(tokenizer: Tokenizer, change) -> Tokenizer:
    spec = json.loads(tokenizer.to_str())
    change(spec)
    return Tokenizer.from_str(json.dumps(spec))


def test_a_token_the_merges_never_build_is_not_looked_up_whole():
    """`tokenizers` (ignore_merges off) builds words from merges only; tiktoken would look a vocabulary word up."""
    word = "Ġzqxjzqxj"  # " zqxjzqxj" in byte-level characters; no merge makes it

    def add_word(spec):
        spec["model"]["vocab"][word] = 1 + max(
            [*spec["model"]["vocab"].values(), *(t["id"] for t in spec["added_tokens"])]
        )

    tokenizer = with_spec(tiny(), add_word)
    text = "see zqxjzqxj here"
    assert tokenizer.token_to_id(word) not in tokenizer.encode(text, add_special_tokens=False).ids
    assert_same_ids(tokenizer, [text, *fuzzed_texts(200, seed=4)])


def test_added_tokens_match_the_text_as_written_or_as_normalized_like_tokenizers():
    """U+212A KELVIN SIGN normalizes (NFC) to "K": an added token matched on normalized text finds "Kx" in "\u212ax",
    one matched as written does not find "Ky" in "\u212ay"."""

    def add_tokens(spec):
        spec["normalizer"] = {"type": "NFC"}
        top = max([*spec["model"]["vocab"].values(), *(t["id"] for t in spec["added_tokens"])])
        for offset, (content, normalized) in enumerate([("Kx", True), ("Ky", False)], start=1):
            flags = {"single_word": False, "lstrip": False, "rstrip": False, "special": False}
            spec["added_tokens"].append({"id": top + offset, "content": content, "normalized": normalized, **flags})

    tokenizer = with_spec(tiny(), add_tokens)
    text = "a \u212ax b \u212ay c Kx Ky"
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert ids.count(tokenizer.token_to_id("Kx")) == 2 and ids.count(tokenizer.token_to_id("Ky")) == 1
    assert_same_ids(tokenizer, [text, *fuzzed_texts(200, seed=6)])


def _reverse_merges(spec):
    spec["model"]["merges"].reverse()


def _lowercase(spec):
    spec["normalizer"] = {"type": "Lowercase"}


def _stripping_added_token(spec):
    spec["added_tokens"][0]["lstrip"] = True


def _metaspace(spec):
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}


@pytest.mark.parametrize("change", [_reverse_merges, _lowercase, _stripping_added_token, _metaspace])
def test_a_tokenizer_tiktoken_cannot_run_falls_back_to_tokenizers(change):
    tokenizer = with_spec(tiny(), change)
    assert fast_bpe(tokenizer) is None
    pairs = PairTokenizer(tokenizer, pad_id=0)
    assert not pairs.fast
    texts = fuzzed_texts(50, seed=5)
    expected = [enc.ids for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert [pairs.encode_text(t).tolist() for t in texts] == expected
