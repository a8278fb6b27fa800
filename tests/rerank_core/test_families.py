"""Model families: chosen by a checkpoint's config.json `model_type`, and nothing outside a family's package asks
which one it has."""

import ast
from pathlib import Path

import pytest

from rerank_core import ModelFormatError
from rerank_core.families import FAMILIES, family_for, model_types
from rerank_core.families.qwen3 import QWEN3
from rerank_core.families.qwen3_vl import QWEN3_VL
from rerank_core.tiny_model import tiny_model_dir

LIBRARY = Path(__file__).resolve().parents[2] / "rerank_core"


def test_a_family_is_chosen_by_model_type():
    assert family_for("qwen3", "here") is QWEN3
    assert family_for("qwen3_vl", "here") is QWEN3_VL
    assert family_for(None, "here") is QWEN3  # no config.json: third-party exports, all of them Qwen3's
    with pytest.raises(ModelFormatError) as info:
        family_for("qwen2_vl", "/models/vl")
    message = str(info.value)
    assert "/models/vl" in message and "model_type='qwen2_vl'" in message and "'qwen3' or 'qwen3_vl'" in message


def test_the_scorer_takes_its_family_from_the_folder(tiny_reranker):
    assert tiny_reranker.scorer.family is QWEN3 and (tiny_model_dir() / "config.json").is_file()


def test_no_model_type_is_compared_outside_the_families():
    """`if model_type == ...` outside rerank_core/families would be a family written into shared code."""
    names = set(model_types()) | {family.name for family in FAMILIES}
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if "families" in path.relative_to(LIBRARY).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                constants = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)]
                found += [f"{path.relative_to(LIBRARY)}:{node.lineno}" for c in constants if c in names]
    assert found == []
