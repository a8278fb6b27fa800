"""What a benchmarked block used: GPU busy share and memory (nvidia-smi, sampled), host CPU (/proc/stat)."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _smi(query: str) -> list[list[str]]:
    """Rows of an nvidia-smi CSV query (no header, no units); [] where nvidia-smi is absent or fails."""
    try:
        out = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line.strip()]


@dataclass
class Usage:
    """Sample the GPU (every `interval_s`, when `gpu`) and the host's CPUs while a `with` block runs."""

    gpu: bool
    interval_s: float = 0.1
    busy: list[float] = field(default_factory=list)  # GPU 0 utilization samples, %
    peak_memory_mib: float = 0.0  # GPU 0 memory.used, peak
    process_memory_mib: dict[int, float] = field(default_factory=dict)  # peak used_memory per process on the GPU
    cpu_busy_share: float = float("nan")  # of all host CPUs, over the block

    def _sample(self) -> None:
        while not self._stop.is_set():
            for util, used in _smi("--query-gpu=utilization.gpu,memory.used")[:1]:
                self.busy.append(float(util))
                self.peak_memory_mib = max(self.peak_memory_mib, float(used))
            for pid, used in _smi("--query-compute-apps=pid,used_memory"):
                if pid.isdigit() and used.replace(".", "", 1).isdigit():
                    self.process_memory_mib[int(pid)] = max(self.process_memory_mib.get(int(pid), 0.0), float(used))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Usage:
        self._stop, self._cpu = threading.Event(), _cpu_times()
        if self.gpu:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        busy, total = _cpu_times()
        if total > self._cpu[1]:
            self.cpu_busy_share = (busy - self._cpu[0]) / (total - self._cpu[1])
        if self.gpu:
            self._stop.set()
            self._thread.join()

    @property
    def gpu_busy_share(self) -> float:
        """Mean sampled GPU utilization, 0..1 (nan without samples)."""
        return sum(self.busy) / len(self.busy) / 100 if self.busy else float("nan")

    @property
    def host_cores_busy(self) -> float:
        """The host CPUs the block kept busy, in cores."""
        return self.cpu_busy_share * (os.cpu_count() or 1)
