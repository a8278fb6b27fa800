"""Export a PyTorch checkpoint once into a shared cache: keyed by source, dtype and exporter; safe across processes."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from ..dtypes import Dtype
from ..locate.manifest import MANIFEST_NAME
from .graph import CUDA_GRAPH_NAMES, EXPORTER_VERSION, export_checkpoint

log = logging.getLogger(__name__)

CACHE_ENV = "QWEN_RERANK_CACHE"
_HASH_CHUNK = 8 << 20


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where exports are cached: the argument, else $QWEN_RERANK_CACHE, else <user cache>/qwen-rerank/exports."""
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
    """What makes a checkpoint this checkpoint: Hub repo + resolved commit, or the bytes of a local folder's files.

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


def export_key(identity: str, dtype: Dtype, exporter_version: str) -> str:
    """A short stable key for (source, dtype, exporter version)."""
    blob = json.dumps({"source": identity, "dtype": dtype.value, "exporter": exporter_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@contextmanager
def _locked(path: Path):
    """An exclusive advisory lock held while the block runs; released by the kernel if the process dies."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_export(
    src_dir: Path, *, name: str, dtype: Dtype, cache_dir: str | os.PathLike | None = None, gpu_graph: bool = False
) -> Path:
    """The export of checkpoint `src_dir` as `dtype`, made now (once, under a lock) unless the cache has it.

    `gpu_graph` (loading for CUDA) adds the GPU graph of `dtype` (f16/f32), a separate cache entry.
    The export is written to a staging folder and renamed into place, so a killed export leaves nothing that
    looks complete; the next caller removes the leftovers and exports again. Nothing is written next to the source.
    """
    root = cache_root(cache_dir)
    cuda_dtypes = [dtype] if gpu_graph and dtype in CUDA_GRAPH_NAMES else []
    version = EXPORTER_VERSION + ("+cuda" if cuda_dtypes else "")
    key = export_key(source_identity(src_dir, memo_dir=root), dtype, version)
    snapshot = hub_snapshot(src_dir)
    label = re.sub(r"[^A-Za-z0-9._-]+", "--", snapshot[0] if snapshot else src_dir.name)[:80]
    final = root / f"{label}-{dtype.value}-{key}"
    if (final / MANIFEST_NAME).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{final.name}.lock"):
        if (final / MANIFEST_NAME).is_file():  # another process exported it while we waited
            log.info("reusing the export of %s made by another process: %s", name, final)
            return final
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            raise ImportError(
                f"{name} is a PyTorch checkpoint and exporting it to ONNX needs the export extra: "
                f"pip install 'qwen-rerank[export]' (pins torch==2.13.0); or export it on a machine that has it with "
                f"`rerank export {name} --out DIR` and load DIR"
            ) from None
        for stale in root.glob(f".{final.name}-*"):  # staging folders of a killed export
            shutil.rmtree(stale, ignore_errors=True)
        log.warning(
            "%s is a PyTorch checkpoint: exporting it to ONNX (%s) once into %s — this takes a few minutes for "
            "Qwen3-Reranker-0.6B; later loads reuse it (cache: $%s)",
            name,
            dtype.value,
            final,
            CACHE_ENV,
        )
        started = time.monotonic()
        export_checkpoint(src_dir, final, dtypes=[dtype], cuda_dtypes=cuda_dtypes, overwrite=True, source_name=name)
        log.warning("export of %s done in %.0f s", name, time.monotonic() - started)
    return final
