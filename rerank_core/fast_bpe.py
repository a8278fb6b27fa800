"""Token ids of byte-level BPE tokenizers (Qwen's) 3–6× faster than `tokenizers`: tiktoken run on the tokenizer's own
vocabulary, built only where it gives the same ids — checked on the tokenizer's structure and on probe texts."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence

from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# `tokenizers`' ByteLevel pre-tokenizer split (use_regex=True): GPT-2's pattern.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Texts whose ids must agree before the fast encoder is used: the template's seams, digits, whitespace runs, CRLF,
# scripts, emoji sequences, text that NFC changes, added tokens inside words.
PROBES = [
    "<|im_start|>system\nJudge whether the Document meets the requirements.<|im_end|>\n<|im_start|>user\n",
    "<Instruct>: Given a web search query, retrieve relevant passages\n<Query>: what is 12345.678?\n<Document>: ",
    "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "  leading and trailing spaces   \n\n\t tabs\r\nCRLF\r\r\n \n  x",
    "It's they'RE we've I'M you'll he'd 'S — “quotes” «guillemets» …ellipsis",
    "数字 2024年12月6日，中文标点。日本語のテキスト、한국어 텍스트",
    "Привет, мир! Ελληνικά ‏עברית العربية हिन्दी ไทย",
    "emoji 👩‍👩‍👧‍👦 🇩🇪 ✊🏽 e\u0301 A\u030a Å ﬁ ½ ① \u00a0nbsp \u200bzwsp",
    "code: def f(x):\n    return x**2 + 1_000  # comment\n\tif a!=b&&c||d: pass",
    "x<|endoftext|>y</think>z<tool_call>{}</tool_call> <|im_end|>",
    "URL https://example.com/a?b=c&d=e#f, email a.b@c.de, path C:\\Users\\x",
    "",
]


def byte_decoder() -> dict[str, int]:
    """The byte each character of a byte-level vocabulary stands for (GPT-2's bytes_to_unicode, inverted)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class FastBpe:
    """Token ids of texts, as the tokenizer it was built from gives them with `add_special_tokens=False`."""

    def __init__(self, encoding, raw: dict[str, int], normalized: dict[str, int], nfc: bool):
        self._encoding, self._ids, self._nfc = encoding, {**raw, **normalized}, nfc
        self._raw, self._normalized = _alternation(raw), _alternation(normalized)

    def encode(self, text: str) -> list[int]:
        """Ids of `text` the way `tokenizers` finds them: added tokens matched as written, the text between them
        normalized, added tokens that match normalized text matched there, the rest split and merged."""
        ids: list[int] = []
        for i, part in enumerate(self._raw.split(text) if self._raw else [text]):
            if i % 2:
                ids.append(self._ids[part])
                continue
            if self._nfc and not unicodedata.is_normalized("NFC", part):
                part = unicodedata.normalize("NFC", part)
            for k, piece in enumerate(self._normalized.split(part) if self._normalized else [part]):
                if k % 2:
                    ids.append(self._ids[piece])
                elif piece:
                    ids.extend(self._encoding.encode_ordinary(piece))
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text."""
        return [self.encode(text) for text in texts]


def _alternation(tokens: dict[str, int]) -> re.Pattern | None:
    """A pattern whose split keeps the tokens found: the longest first, as `tokenizers` matches them."""
    if not tokens:
        return None
    return re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + ")")


# The last vocabularies built, by their tokenizer's JSON: a process loading a model again (another dtype, layout or
# size of the same family) reuses them instead of building for ~1.2 s and ~56 MiB each time (Qwen's vocabulary).
_BUILT: OrderedDict[bytes, FastBpe | None] = OrderedDict()
_BUILDING = threading.Lock()  # replicas and actors load models from several threads
KEEP_BUILT = 2


def fast_bpe(tokenizer: Tokenizer) -> FastBpe | None:
    """A FastBpe giving `tokenizer`'s ids; None where it cannot (not a byte-level BPE tiktoken runs the same way, no
    tiktoken installed, or a probe text encoded differently) — the caller then uses `tokenizer` itself."""
    text = tokenizer.to_str()
    key = hashlib.blake2b(text.encode(), digest_size=16).digest()
    with _BUILDING:
        if key not in _BUILT:
            _BUILT[key] = _build(tokenizer, text)
            while len(_BUILT) > KEEP_BUILT:
                _BUILT.popitem(last=False)
        _BUILT.move_to_end(key)
        return _BUILT[key]


def _build(tokenizer: Tokenizer, text: str) -> FastBpe | None:
    """fast_bpe's work, for `tokenizer` whose JSON is `text`."""
    try:
        import tiktoken
    except ImportError:
        return None
    spec = json.loads(text)
    plan = _plan(spec)
    if plan is None:
        return None
    pattern, nfc = plan
    ranks = _ranks(spec, tokenizer)
    if ranks is None:
        return None
    added = spec.get("added_tokens") or []
    raw = {t["content"]: t["id"] for t in added if not (nfc and t.get("normalized"))}
    normalized = {t["content"]: t["id"] for t in added if nfc and t.get("normalized")}
    encoding = tiktoken.Encoding("rerank-fast-bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    fast = FastBpe(encoding, raw, normalized, nfc)
    for probe in PROBES:
        if fast.encode(probe) != tokenizer.encode(probe, add_special_tokens=False).ids:
            log.warning("tokenizer: the fast BPE path disagrees on a probe text; using `tokenizers` alone")
            return None
    return fast


def _plan(spec: dict) -> tuple[str, bool] | None:
    """(split pattern, NFC) of a tokenizer tiktoken can run: NFC or no normalizer, a byte-level pre-tokenizer with
    one regex split, a plain BPE model, added tokens that never strip spaces nor need whole words (and, matched on
    normalized text, are NFC already); None otherwise."""
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        return None
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        pattern = GPT2_PATTERN
    elif pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 2:
        split, byte_level = pre["pretokenizers"]
        regex = (split.get("pattern") or {}).get("Regex")
        plain_split = split.get("type") == "Split" and split.get("behavior") == "Isolated" and not split.get("invert")
        if not (plain_split and regex and byte_level.get("type") == "ByteLevel"):
            return None
        if byte_level.get("use_regex", True) or byte_level.get("add_prefix_space"):
            return None
        pattern = regex
    else:
        return None
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback"):
        return None
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return None
    added = [token["content"] for token in spec.get("added_tokens") or []]
    for token in spec.get("added_tokens") or []:
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            return None
        if (
            token.get("normalized")
            and normalizer is not None
            and unicodedata.normalize("NFC", token["content"]) != token["content"]
        ):
            return None
    if len(set(added)) != len(added):
        return None
    return pattern, normalizer is not None


def _ranks(spec: dict, tokenizer: Tokenizer) -> dict[bytes, int] | None:
    """tiktoken's ranks: each vocabulary token's bytes → its id, where ids rise with the merges that make them (tiktoken
    merges by the merged token's rank, `tokenizers` by the merge's place: the same order then). Tokens its merges
    never build from their own bytes are left out when the model never looks words up whole (`ignore_merges` off):
    tiktoken would look them up."""
    vocab: dict[str, int] = spec["model"]["vocab"]
    last = -1
    for merge in spec["model"].get("merges") or []:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        merged = vocab.get(left + right)
        if merged is None or merged < last:
            return None
        last = merged
    chars = byte_decoder()
    added = {token["content"] for token in spec.get("added_tokens") or []}
    looks_up_words = bool(spec["model"].get("ignore_merges"))
    ranks: dict[bytes, int] = {}
    for token, token_id in vocab.items():
        if token in added:
            continue
        try:
            token_bytes = bytes(chars[c] for c in token)
        except KeyError:
            return None  # not a byte-level vocabulary
        if looks_up_words or len(token) == 1 or [t.id for t in tokenizer.model.tokenize(token)] == [token_id]:
            ranks[token_bytes] = token_id
    if len(set(ranks.values())) != len(ranks) or any(bytes([b]) not in ranks for b in range(256)):
        return None
    return ranks
