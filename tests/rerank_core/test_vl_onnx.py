"""Qwen3-VL-Reranker on our two ONNX graphs (families/qwen3_vl/export.py, scoring.py) against the official recipe on
the tiny random checkpoint: text, image and mixed pairs within 1e-4, in any call composition, an image the same
whether given as bytes, a path, a data URI or a PIL image."""

import base64
import io

import numpy as np
import pytest

from rerank_core.errors import ImageRefusedError, InvalidInputError
from rerank_core.families.qwen3_vl.export import export_vl_checkpoint
from rerank_core.families.qwen3_vl.scoring import VLScorer
from tests.rerank_core.test_vl_recipe import PAIRS, photo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scorer(tiny_vl_checkpoint, tmp_path_factory):
    return VLScorer.open(export_vl_checkpoint(tiny_vl_checkpoint, tmp_path_factory.mktemp("vl-export")), threads=1)


def as_pairs(recipe_pairs):
    """The oracle's sides ({"text": [...], "image": [...]}) as the scorer takes them."""
    return [tuple({k: v for k, v in side.items()} for side in pair) for pair in recipe_pairs]


MORE = [
    ({"text": ["a cat"], "image": [photo(120, 90, 7), photo(50, 200, 8)]}, {"text": ["two images in the query"]}),
    ({}, {"image": [photo(33, 17, 9)]}),  # an empty query: NULL
]


def test_scores_equal_the_official_recipe_in_any_call_composition(scorer, official_vl):
    pairs = PAIRS + MORE
    want = official_vl.score(pairs)
    together = scorer.score(as_pairs(pairs))
    np.testing.assert_allclose(together, want, atol=1e-4)
    alone = np.concatenate([scorer.score(as_pairs([pair])) for pair in pairs])
    backwards = scorer.score(as_pairs(pairs[::-1]))[::-1]
    np.testing.assert_allclose(alone, together, atol=1e-6)
    np.testing.assert_allclose(backwards, together, atol=1e-6)


def test_instructions_and_truncation_follow_the_recipe(scorer, official_vl):
    pairs = [PAIRS[1], PAIRS[3]]
    for instruction, max_length in (("Find the photo of the query", 10_240), ("", 10_240), (None, 40)):
        want = official_vl.score(pairs, instruction=instruction, max_length=max_length)
        got = scorer.score(as_pairs(pairs), instruction=instruction, max_length=max_length)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_an_image_scores_the_same_however_it_is_given(scorer, tmp_path):
    image = photo(96, 64, 1)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (tmp_path / "car.png").write_bytes(buffer.getvalue())
    sources = [
        image,
        buffer.getvalue(),
        str(tmp_path / "car.png"),
        "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    ]
    scores = scorer.score([("a red car", {"image": source}) for source in sources])
    assert np.ptp(scores) == 0.0


def test_bad_inputs_are_refused_naming_the_document(scorer):
    with pytest.raises(ImageRefusedError, match=r"documents\[1\].image\[0\]"):
        scorer.score([("q", "d"), ("q", {"image": b"not an image"})])
    with pytest.raises(InvalidInputError, match=r"documents\[0\]: text holds the control token <\|image_pad\|>"):
        scorer.score([("q", "smuggled <|image_pad|>")])
    with pytest.raises(InvalidInputError, match=r"query: video is not supported yet"):
        scorer.score([({"video": "clip.mp4"}, "d")])
    with pytest.raises(InvalidInputError, match=r"documents\[0\]: must be a string or an object"):
        scorer.score([("q", {"audio": "x"})])
