"""Device memory for model calls: ONNX Runtime's arena capped where asked, and its allocation failures recognised, so
a call that does not fit is split instead of failing its requests."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator

import onnxruntime as ort

from ...errors import DeviceMemoryError

log = logging.getLogger(__name__)

# How ONNX Runtime reports a failed allocation: its arena over its cap (CPU or CUDA), cudaMalloc refused, or a CUDA
# library out of workspace.
ALLOCATION_FAILURE = re.compile(
    r"Available memory of \d+ is smaller than requested bytes|Failed to allocate memory|out of memory|ALLOC_FAILED"
    r"|bad_alloc",
    re.IGNORECASE,
)


def is_allocation_failure(exc: BaseException) -> bool:
    """True when `exc` (from a session's run) says the call's memory could not be allocated."""
    return isinstance(exc, (MemoryError, RuntimeError, ort.capi.onnxruntime_pybind11_state.Fail)) and bool(
        ALLOCATION_FAILURE.search(str(exc))
    )


@contextlib.contextmanager
def device_memory_errors() -> Iterator[None]:
    """Raise an allocation failure inside the block as DeviceMemoryError (retryable), other errors as they are."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, DeviceMemoryError) or not is_allocation_failure(exc):
            raise
        raise DeviceMemoryError(
            "a model call did not fit the device's free memory even one row at a time (memory_limit_mib, or the GPU "
            "shared with other work); retry, or send shorter documents"
        ) from exc


def cuda_memory_options(limit_mib: int | None) -> dict[str, str]:
    """The CUDA provider's options that cap its arena at `limit_mib` (none without a limit)."""
    return {} if limit_mib is None else {"gpu_mem_limit": str(limit_mib * 2**20)}


def use_cpu_arena(options: ort.SessionOptions, limit_mib: int) -> None:
    """Make a CPU session allocate from this process's capped arena (registered by the first caller; ONNX Runtime
    holds one per process, so a later, different cap is refused with a warning and the first one kept)."""
    registered = _register_cpu_arena(limit_mib)
    if registered != limit_mib:
        log.warning("memory_limit_mib=%d: this process's CPU arena is already capped at %d MiB", limit_mib, registered)
    options.add_session_config_entry("session.use_env_allocators", "1")


_cpu_arena_mib: int | None = None  # the cap of this process's CPU arena, once registered
_lock = threading.Lock()


def _register_cpu_arena(limit_mib: int) -> int:
    """Register the process's CPU arena capped at `limit_mib` once; returns the cap it has."""
    global _cpu_arena_mib
    with _lock:
        if _cpu_arena_mib is None:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg({"max_mem": limit_mib * 2**20}))
            _cpu_arena_mib = limit_mib
        return _cpu_arena_mib
