"""The `rerank` console script: a ranking printed, and errors as one line with exit status 2."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from rerank_core.backends.onnx import OnnxScorer
from rerank_core.model_files.manifest import Manifest
from rerank_core.tiny_model import TINY_MODEL, TINY_NAME, tiny_model_dir

RERANK = str(Path(sys.executable).with_name("rerank"))  # the console script installed beside this interpreter


def test_cli_score_prints_a_ranking(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("Machine learning is a subset of AI.\nThe weather is sunny today.\nPizza.\n")
    out = subprocess.run(
        [RERANK, "score", "--model", TINY_MODEL, "--query", "What is ML?", "--documents", str(docs), "--top-k", "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "Query: What is ML?" and len(lines) == 3
    assert lines[1].strip().startswith("1.") and lines[2].strip().startswith("2.")


def test_cli_error_is_one_line_and_exit_2():
    proc = subprocess.run(
        [RERANK, "score", "--model", "/no/such/model", "--query", "q", "--documents", "-"],
        input="doc\n",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")


def test_building_the_tiny_model_prints_our_progress_no_third_party_noise_and_makes_the_packaged_one(
    tmp_path, mixed_pairs
):
    """The exporter stack's notes (torchvision missing, deprecations, optimizer INFO lines, progress bars) stay out;
    what `rerank tiny-model` builds is the model shipped in the package."""
    proc = subprocess.run(
        [RERANK, "tiny-model", str(tmp_path / "tiny")], capture_output=True, text=True, check=True, timeout=300
    )
    said = proc.stdout + proc.stderr
    assert "INFO rerank_core.export.graph: exporting f32 graph" in said and "tiny model written to" in said
    noise = ["torchvision", "Warning", "onnxscript", "onnx_ir", "Loading weights", "Writing model shards"]
    assert [n for n in noise if n in said] == [], said
    packaged = OnnxScorer.open(tiny_model_dir()).score(mixed_pairs)
    np.testing.assert_allclose(OnnxScorer.open(tmp_path / "tiny").score(mixed_pairs), packaged, atol=1e-5)
    assert (tmp_path / "tiny" / "tokenizer.json").read_text() == (tiny_model_dir() / "tokenizer.json").read_text()
    assert Manifest.read(tiny_model_dir()).source == Manifest.read(tmp_path / "tiny").source == TINY_NAME
