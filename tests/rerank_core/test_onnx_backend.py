"""The ONNX backend: device selection and CPU fallback, thread settings, clear errors for broken folders."""

import shutil

import numpy as np
import onnxruntime as ort
import pytest

from rerank_core import ModelFormatError
from rerank_core.backends.onnx import OnnxScorer, select_providers
from rerank_core.config import MAX_ROWS_PER_CALL
from rerank_core.tiny_model import tiny_model_dir

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU fallback; this machine has CUDA")
def test_cuda_request_falls_back_to_cpu_with_one_warning(caplog, mixed_pairs):
    with caplog.at_level("WARNING"):
        scorer = OnnxScorer.open(tiny_model_dir(), device="cuda")
    assert scorer.device == "cpu"
    assert sum("CUDA" in r.message for r in caplog.records) == 1
    np.testing.assert_allclose(
        scorer.score(mixed_pairs), OnnxScorer.open(tiny_model_dir(), device="cpu").score(mixed_pairs), atol=1e-6
    )


def test_auto_uses_cpu_silently_without_cuda(caplog):
    with caplog.at_level("WARNING"):
        providers = select_providers("auto")
    assert providers[-1] == "CPUExecutionProvider"
    if not HAS_CUDA:
        assert providers == ["CPUExecutionProvider"] and not caplog.records


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device"):
        select_providers("tpu")


def test_intra_op_threads_is_applied():
    scorer = OnnxScorer.open(tiny_model_dir(), intra_op_threads=1)
    assert scorer.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("missing,match", [("tokenizer.json", "tokenizer.json"), ("model.onnx", "model.onnx")])
def test_folder_missing_a_file_gives_a_clear_error(tmp_path, missing, match):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir(), folder)
    (folder / missing).unlink()
    with pytest.raises(ModelFormatError, match=match):
        OnnxScorer.open(folder)


def test_dtype_not_exported_names_what_exists():
    with pytest.raises(ModelFormatError, match=r"no int8 graph.*\['f32'\].*--dtype int8"):
        OnnxScorer.open(tiny_model_dir(), dtype="int8")


def test_rows_per_call_default_by_device_and_an_explicit_value_wins():
    assert OnnxScorer.open(tiny_model_dir()).max_rows_per_call == MAX_ROWS_PER_CALL["cpu"] == 32
    assert OnnxScorer.open(tiny_model_dir(), max_rows_per_call=7).max_rows_per_call == 7


def test_missing_folder():
    with pytest.raises(ModelFormatError, match="does not exist"):
        OnnxScorer.open("/no/such/folder")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA device")
def test_cuda_provider_is_used_when_present(mixed_pairs):
    gpu = OnnxScorer.open(tiny_model_dir(), device="cuda")
    assert gpu.device == "cuda"
    cpu = OnnxScorer.open(tiny_model_dir(), device="cpu")
    np.testing.assert_allclose(gpu.score(mixed_pairs), cpu.score(mixed_pairs), atol=1e-3)
