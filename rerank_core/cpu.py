"""What this CPU's instructions can do, read from /proc/cpuinfo (Linux; elsewhere nothing is known)."""

from __future__ import annotations

import functools
from pathlib import Path

# x86 flags of an exact u8 × s8 dot product summed into int32 (VPDPBUSD, TDPBUSD); without one, ONNX Runtime's
# u8 × s8 GEMM uses VPMADDUBSW, which saturates each pair sum at int16.
INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# int8 graphs' weight bits: 8 where the CPU sums u8 × s8 exactly; 7 (±63) keeps 2 × 255 × 63 = 32130 inside int16.
EXACT_INT8_WEIGHT_BITS = 8
SATURATION_SAFE_INT8_WEIGHT_BITS = 7


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel reports for this CPU (empty where /proc/cpuinfo is absent)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return frozenset()
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def multiplies_int8_exactly() -> bool:
    """True where this CPU sums u8 × s8 products exactly into int32 (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    return bool(cpu_flags() & INT8_DOT_PRODUCT_FLAGS)


def int8_weight_bits() -> int:
    """The weight bits of an int8 graph exported for this CPU: 8 where it sums u8 × s8 exactly, else 7."""
    return EXACT_INT8_WEIGHT_BITS if multiplies_int8_exactly() else SATURATION_SAFE_INT8_WEIGHT_BITS
