"""The cache of files derived from a model (ONNX exports, OpenVINO graphs): where it lies, what identifies a source,
and building an entry once across processes."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "QWEN_RERANK_CACHE"
_HASH_CHUNK = 8 << 20


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where derived files are cached: the argument, else $QWEN_RERANK_CACHE, else <user cache>/qwen-rerank/exports."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qwen-rerank" / "exports"


def hub_snapshot(folder: Path) -> tuple[str, str] | None:
    """(repo id, commit) when `folder` lies in a Hugging Face cache snapshot (models--org--name/snapshots/<sha>)."""
    for parent in (folder, *folder.parents):
        if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("models--"):
            repo = parent.parent.parent.name[len("models--") :].replace("--", "/")
            return repo, parent.name
    return None


def source_identity(folder: Path, memo_dir: Path | None = None) -> str:
    """What makes a model folder this folder: Hub repo + resolved commit, or the bytes of a local folder's files.

    Hashing a local 0.6B checkpoint reads 2.4 GB; with `memo_dir` the hash is remembered per file stat signature
    (name, size, mtime, inode), so an unchanged folder is hashed once and any rewrite of a file is hashed again.
    """
    snapshot = hub_snapshot(folder)
    if snapshot is not None:
        repo, commit = snapshot
        return f"hub:{repo}@{commit}:{folder.name}"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    memo = None
    if memo_dir is not None:
        stats = [(p.name, st.st_size, st.st_mtime_ns, st.st_ino) for p in files for st in [p.stat()]]
        signature = hashlib.sha256(json.dumps([str(folder.resolve()), stats]).encode()).hexdigest()[:32]
        memo = memo_dir / ".identities" / signature
        if memo.is_file():
            return memo.read_text()
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    identity = f"files:{digest.hexdigest()}"
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        staged = memo.with_name(f".{memo.name}-{os.getpid()}")
        staged.write_text(identity)
        os.replace(staged, memo)
    return identity


def entry_label(name: str, limit: int) -> str:
    """A readable start for an entry's folder name: `name` (a repo id, a folder) with path-unsafe runs as `--`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name)[:limit]


def cache_key(**fields: str) -> str:
    """A short stable key for what an entry was made from (source identity, dtype, versions)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


@contextmanager
def _locked(path: Path):
    """An exclusive advisory lock held while the block runs; released by the kernel if the process dies."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(final: Path, complete: str, build: Callable[[Path], None]) -> bool:
    """Make cache entry `final` with `build(final)` unless its file `complete` exists; True when this call built it.

    One process builds while the others wait on a lock, then reuse its entry. `build` must stage its files in a
    sibling folder named `.{final.name}-*` and rename it into place, so a killed build leaves nothing that looks
    complete; the next caller removes such leftovers and builds again.
    """
    if (final / complete).is_file():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f".{final.name}.lock"):
        if (final / complete).is_file():  # another process built it while we waited
            log.info("reusing %s, made by another process", final)
            return False
        for stale in final.parent.glob(f".{final.name}-*"):  # staging folders of a killed build
            shutil.rmtree(stale, ignore_errors=True)
        build(final)
    return True
