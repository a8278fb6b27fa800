"""OpenVINO sessions over our f32 ONNX graphs (read from their cached IR): the bf16 path for CPUs that multiply bf16
(AMX-BF16, AVX512-BF16)."""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .openvino_ir import cached_ir

INSTALL_HINT = "pip install 'qwen-rerank[openvino]'"
NO_BF16 = "this CPU has neither AMX-BF16 nor AVX512-BF16"
# OpenVINO's CPU attention sums its keys a vector (16 f32) at a time and the remainder apart, so in bf16 a pair's
# score moved with how far its call was padded (by up to 2.5e-3 on the 0.6B shape, AVX512-BF16): a call whose keys
# (past + new) fill whole blocks of 16 scores each pair bit-identically whatever shares it (32 measured the same,
# ~5% slower). Padding a call to whole blocks costs 7.5 tokens a row on average.
BF16_KEY_BLOCK = 16
_ONNX_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "i64": "tensor(int64)", "i32": "tensor(int32)"}


def openvino_installed() -> bool:
    """True when the openvino package (the `openvino` extra) can be imported."""
    return importlib.util.find_spec("openvino") is not None


def import_openvino():
    """The openvino module, or an ImportError naming the extra that installs it."""
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(f"dtype bf16 runs on OpenVINO, which is not installed: {INSTALL_HINT}") from exc
    return openvino


@functools.cache
def cpu_runs_bf16() -> bool:
    """True when OpenVINO's CPU plugin computes bf16 natively on this machine (AMX-BF16 or AVX512-BF16)."""
    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def bf16_available() -> bool:
    """True where dtype bf16 computes bf16: OpenVINO is installed and this CPU multiplies bf16 natively."""
    return openvino_installed() and cpu_runs_bf16()


class OpenVinoSession:
    """An ONNX graph compiled by OpenVINO for the CPU, behind the part of ort.InferenceSession the layouts use
    (get_inputs, get_outputs, run, get_providers)."""

    def __init__(self, compiled):
        self.compiled = compiled  # an OpenVINO CompiledModel of one of our graphs
        self.precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.key_block = BF16_KEY_BLOCK if self.precision == "bf16" else 1  # calls' keys come in multiples of this
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request runs one call at a time; ORT sessions allow concurrent runs

    @classmethod
    def open(
        cls,
        graph: Path,
        *,
        precision: str = "bf16",
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> OpenVinoSession:
        """ONNX `graph` compiled for the CPU at `precision`, read from its cached IR (written on first use; its weights
        stored in bf16 for bf16)."""
        core = import_openvino().Core()
        weights = "bf16" if precision == "bf16" else "f32"
        model = core.read_model(str(cached_ir(graph, cache_dir, weights)))  # weights mapped from the cached file
        config = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        return cls(core.compile_model(model, "CPU", config))

    @staticmethod
    def _describe(port) -> SimpleNamespace:
        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        return SimpleNamespace(
            name=port.get_any_name(), shape=shape, type=_ONNX_TYPES[port.get_element_type().get_type_name()]
        )

    def get_inputs(self) -> list[SimpleNamespace]:
        """Inputs as ONNX Runtime describes them: name, shape (None where dynamic), ONNX type."""
        return [self._describe(port) for port in self.compiled.inputs]

    def get_outputs(self) -> list[SimpleNamespace]:
        """Outputs as ONNX Runtime describes them."""
        return [self._describe(port) for port in self.compiled.outputs]

    def get_providers(self) -> list[str]:
        """Where the graph runs, in ONNX Runtime's terms."""
        return [f"OpenVINO CPU ({self.precision})"]

    def run(self, names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs for `feed` (None: all, in order), as ort.InferenceSession.run returns them (copies, safe
        to keep)."""
        with self._lock:
            results = self._request.infer(feed)
            ports = self.compiled.outputs if names is None else [self.compiled.output(name) for name in names]
            return [results[port] for port in ports]
