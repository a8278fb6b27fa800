"""The model families this version scores, each chosen by its checkpoint's config.json `model_type`."""

from __future__ import annotations

from ..errors import ModelFormatError
from .base import ModelFamily
from .qwen3 import QWEN3
from .qwen3_vl import QWEN3_VL

FAMILIES: tuple[ModelFamily, ...] = (QWEN3, QWEN3_VL)
# A folder without config.json (a third-party export, or one we wrote before they carried it) is a Qwen3 one:
# the only family whose graphs were ever exported without it.
WITHOUT_CONFIG = QWEN3


def model_types() -> list[str]:
    """Every config.json `model_type` some family scores."""
    return [model_type for family in FAMILIES for model_type in family.model_types]


def family_for(model_type: str | None, where: str) -> ModelFamily:
    """The family of the checkpoint or export at `where`, whose config.json says `model_type` (None: it has none)."""
    if model_type is None:
        return WITHOUT_CONFIG
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise ModelFormatError(
        f"{where}: config.json says model_type={model_type!r}; this version scores model_type "
        + " or ".join(repr(t) for t in model_types())
    )


__all__ = ["FAMILIES", "ModelFamily", "family_for", "model_types"]
