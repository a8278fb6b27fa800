"""The official Qwen3-VL-Reranker prompt: Qwen3-VL's chat template with a generation prompt and no think block, the
parts of each side joined with no separator (images before texts, as the recipe orders them), each image one
`<|image_pad|>` per token between `<|vision_start|>` and `<|vision_end|>`; and the recipe's truncation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...errors import InvalidInputError

SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the "
    'answer can only be "yes" or "no".'
)
DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
PREFIX = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
SUFFIX_TOKENS = 5  # <|im_end|> \n <|im_start|> assistant \n: never truncated
IMAGE_START, IMAGE_PAD, IMAGE_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
# Text that holds these would shift image features against their positions, or end the prompt early.
CONTROL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    IMAGE_START,
    IMAGE_END,
    "<|vision_pad|>",
    IMAGE_PAD,
    "<|video_pad|>",
)
MAX_LENGTH = 10_240


@dataclass(frozen=True)
class Side:
    """One side of a pair as the prompt lays it out: its images (as the tokens each takes), then its texts."""

    texts: tuple[str, ...] = ()
    image_tokens: tuple[int, ...] = ()


def check_texts(texts: Iterable[str], where: str) -> None:
    """Refuse text holding a vision or chat control token, naming the input."""
    for text in texts:
        if found := [token for token in CONTROL_TOKENS if token in text]:
            raise InvalidInputError(where, f"text holds the control token {found[0]}", "no special tokens in text")


def prompt(query: Side, document: Side, instruction: str | None) -> str:
    """The whole prompt of one pair; an empty or missing instruction is the recipe's default."""
    return f"{head(query, instruction)}{_side(chr(10) + '<Document>:', document)}{SUFFIX}"


def head(query: Side, instruction: str | None) -> str:
    """The prompt up to the end of the query: what every document of one query starts with."""
    return f"{PREFIX}<Instruct>: {instruction or DEFAULT_INSTRUCTION}{_side('<Query>:', query)}"


def _side(tag: str, side: Side) -> str:
    if not side.texts and not side.image_tokens:
        return f"{tag}NULL"
    images = "".join(f"{IMAGE_START}{IMAGE_PAD * n}{IMAGE_END}" for n in side.image_tokens)
    return tag + images + "".join(side.texts)


def truncate(ids: Sequence[int], max_length: int, special_ids: frozenset[int]) -> list[int]:
    """The recipe's cut: of all tokens but the last five, every special one stays (image pads, chat markers) and the
    others only while fewer than `max_length` minus the special ones have been kept; a pair can exceed max_length."""
    body, tail = list(ids[:-SUFFIX_TOKENS]), list(ids[-SUFFIX_TOKENS:])
    if len(body) <= max_length:
        return body + tail
    budget = max_length - sum(1 for i in body if i in special_ids)
    kept = []
    for token in body:
        if token in special_ids:
            kept.append(token)
        elif budget > 0:
            kept.append(token)
            budget -= 1
    return kept + tail
