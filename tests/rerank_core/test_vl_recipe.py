"""The VL family's oracle (tests/oracle_vl.py) on the built tiny Qwen3-VL checkpoint, and what the product computes
outside the model so far against what transformers computes inside it: token ids and mRoPE positions."""

import numpy as np
import pytest
from PIL import Image

from rerank_core.families.qwen3_vl.pixels import PixelBudget, image_patches, image_tokens
from rerank_core.families.qwen3_vl.positions import mrope_positions
from rerank_core.families.qwen3_vl.template import Side, prompt, truncate
from rerank_core.qwen_tokenizer import qwen_tokenizer

pytestmark = pytest.mark.slow


def photo(width, height, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@pytest.fixture
def recipe(official_vl):
    return official_vl


PAIRS = [
    ({"text": ["What is machine learning?"]}, {"text": ["ML learns from data."]}),
    ({"text": ["a red car"]}, {"image": [photo(96, 64, 1)]}),
    ({"text": ["a red car"]}, {"image": [photo(96, 64, 2)]}),
    ({"image": [photo(64, 160, 3)]}, {"text": ["a tall photo"], "image": [photo(40, 40, 4)]}),
]


def test_the_recipe_scores_text_and_images_and_an_image_changes_the_score(recipe):
    scores = recipe.score(PAIRS)
    assert scores.shape == (4,) and np.all((scores > 0) & (scores < 1))
    assert len({round(s, 6) for s in scores}) == 4  # another image, another score
    assert recipe.score(PAIRS[1:2])[0] == scores[1]  # one pair per forward: alone or not, the same


def our_inputs(query, document, instruction=None, max_length=10_240):
    """(ids, grids) as the product makes them for one pair."""
    budget, sides = PixelBudget(), []
    for side in (query, document):
        tokens = tuple(image_tokens(*image.size, budget, "side") for image in side.get("image", []))
        sides.append(Side(texts=tuple(side.get("text", [])), image_tokens=tokens))
    ids = qwen_tokenizer().encode(prompt(*sides, instruction), add_special_tokens=False).ids
    grids = [image_patches(im, budget, "s")[1] for im in (*query.get("image", []), *document.get("image", []))]
    return truncate(ids, max_length, frozenset(range(151643, 151657))), grids


@pytest.mark.parametrize("pair", PAIRS, ids=["text", "image-document", "other-image", "image-query-and-document"])
def test_our_ids_grids_and_mrope_positions_are_transformers(recipe, pair):
    inputs = recipe.inputs(*pair)
    ids, grids = our_inputs(*pair)
    assert ids == inputs["input_ids"][0].tolist()
    if grids:
        assert [list(g) for g in grids] == inputs["image_grid_thw"].tolist()
    want, _ = recipe.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw")
    )
    got = mrope_positions(ids, grids, recipe.image_pad_id)
    np.testing.assert_array_equal(got, want[:, 0].numpy())
