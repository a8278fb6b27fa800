"""Find a model: a local folder, a model shipped in the package, or a Hub repo id through huggingface_hub's cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ModelNotFoundError
from ..tiny_vl_model import TINY_VL_NAME, tiny_vl_checkpoint

BUILTIN_PREFIX = "builtin:"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
_TRUTHY = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no network (read at call time, not import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def resolve_model_dir(
    model: str | os.PathLike,
    *,
    revision: str | None = None,
    path_in_repo: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return the local folder holding `model`'s files, downloading into the Hub cache if needed.

    `model` is a folder path, `builtin:NAME` (a model shipped in this package), or a Hub repo id. Offline
    (HF_HUB_OFFLINE=1 or no network) only the cache is used, and a miss fails at once with what to do.
    """
    text = os.fspath(model)
    if text == BUILTIN_PREFIX + TINY_VL_NAME:
        root = tiny_vl_checkpoint()
    elif text.startswith(BUILTIN_PREFIX):
        root = ASSETS / text[len(BUILTIN_PREFIX) :]
        if not root.is_dir():
            known = sorted(p.name for p in ASSETS.iterdir() if p.is_dir()) if ASSETS.is_dir() else []
            raise ModelNotFoundError(f"no built-in model {text!r}; built-in models: {[*known, TINY_VL_NAME]}")
    elif Path(text).expanduser().exists():
        root = Path(text).expanduser()
    else:
        root = _download(text, revision, allow_patterns, cache_dir, path_in_repo)
    folder = root / path_in_repo if path_in_repo else root
    if not folder.is_dir():
        raise ModelNotFoundError(f"{model!r}: {folder} is not a folder")
    return folder


def _download(
    repo_id: str,
    revision: str | None,
    allow_patterns: Sequence[str] | None,
    cache_dir: str | os.PathLike | None,
    path_in_repo: str | None,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = None
    if allow_patterns is not None:
        base = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
        patterns = [f"{base}{p}" for p in allow_patterns] + list(allow_patterns)
    offline = hub_offline()
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=patterns,
                cache_dir=cache_dir,
                local_files_only=offline,
            )
        )
    except HFValidationError:
        raise ModelNotFoundError(f"{repo_id!r} is neither an existing folder nor a valid Hub repo id") from None
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as exc:
        raise ModelNotFoundError(
            f"{repo_id!r} (revision {revision or 'main'}) is not available on the Hub: {exc}"
        ) from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        raise ModelNotFoundError(
            f"model {repo_id!r} (revision {revision or 'main'}) is not in the Hugging Face cache and {why}. "
            f"Fetch it where there is network (`hf download {repo_id}`) and copy the cache here, "
            "or pass the path of a local folder (e.g. one written by `rerank export`)."
        ) from None
