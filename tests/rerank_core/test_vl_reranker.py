"""Qwen3-VL-Reranker behind `Reranker` (`builtin:tiny-qwen3-vl-reranker`, exported by our exporter into the export
cache) against the official recipe: text, image and mixed pairs within 1e-4 in any call composition, an image the
same however it is given, each distinct image encoded once, each query's prompt run once, caches that tell two
images apart, and inputs refused naming what the caller gave."""

import base64
import collections
import dataclasses
import io
import json
import logging
import types

import numpy as np
import onnx
import pytest
from scipy.stats import spearmanr

from rerank_core import Reranker
from rerank_core.backends.onnx.openvino_session import NO_BF16, bf16_available, cpu_runs_bf16
from rerank_core.cli import main
from rerank_core.content import Content, Image, Text
from rerank_core.errors import ImageRefusedError, InvalidInputError, ModelFormatError
from rerank_core.families.qwen3_vl.costs import VisionCost
from rerank_core.families.qwen3_vl.layout import ImageFeatures
from rerank_core.model_files.folder import ModelFolder
from rerank_core.tiny_vl_model import FULL_SIZE_TEXT, FULL_SIZE_VISION
from tests.rerank_core.test_vl_recipe import PAIRS, photo

pytestmark = pytest.mark.slow

MORE = [
    ({"text": ["a cat"], "image": [photo(120, 90, 7), photo(50, 200, 8)]}, {"text": ["two images in the query"]}),
    ({"text": ["an empty document"]}, {}),  # NULL
    ({"image": [photo(64, 160, 3)]}, {"text": ["the same query image again"]}),
]
LONG = ({"text": ["what is long?"]}, {"text": ["word " * 10_300]})  # past 10,240 tokens: the recipe's cut


def as_recipe(side) -> dict:
    """A side as the oracle takes it: {"text": [...], "image": [...]}."""
    side = {"text": side} if isinstance(side, str) else side
    return {key: value if isinstance(value, list) else [value] for key, value in side.items()}


def vision_features(reranker: Reranker, side: dict) -> np.ndarray:
    """The features `reranker`'s vision encoder gives the one image of `side`."""
    scorer = reranker.scorer
    item = scorer.prepare([("q", side)])
    scorer.precompute(item)
    (key,) = item.payload.media
    return scorer.layout.features[key][1]


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_scores_equal_the_official_recipe_in_any_call_composition(tiny_vl_reranker, official_vl):
    pairs = PAIRS + MORE
    want = official_vl.score(pairs)
    together = tiny_vl_reranker.score_pairs(pairs)
    np.testing.assert_allclose(together, want, atol=1e-4)
    alone = np.concatenate([tiny_vl_reranker.score_pairs([pair]) for pair in pairs])
    backwards = tiny_vl_reranker.score_pairs(pairs[::-1])[::-1]
    with_text = tiny_vl_reranker.score_pairs([("plain text", "pairs"), *pairs, ("mixed", "in")])[1:-1]
    for other in (alone, backwards, with_text):
        np.testing.assert_allclose(other, together, atol=1e-5)


def test_instructions_and_truncation_follow_the_recipe(tiny_vl_reranker, official_vl, tiny_vl_checkpoint):
    pairs = [PAIRS[1], PAIRS[3]]
    for instruction in ("Find the photo of the query", ""):
        want = official_vl.score(pairs, instruction=instruction)
        np.testing.assert_allclose(tiny_vl_reranker.score_pairs(pairs, instruction=instruction), want, atol=1e-4)
    np.testing.assert_allclose(tiny_vl_reranker.score_pairs([LONG]), official_vl.score([LONG]), atol=1e-4)
    short = Reranker.from_pretrained(tiny_vl_checkpoint, max_length=64)  # cuts into the template's words
    np.testing.assert_allclose(short.score_pairs(pairs), official_vl.score(pairs, max_length=64), atol=1e-4)


def test_an_image_query_against_many_documents_runs_its_prompt_and_image_once(tiny_vl_reranker, official_vl):
    query = {"text": "which of these?", "image": photo(200, 120, 11)}
    documents = [f"candidate {k} " * k for k in range(1, 7)] + [{"image": photo(64, 64, 12)}]
    scorer = tiny_vl_reranker.scorer
    prepared = scorer.prepare([(query, d) for d in documents])
    # Each row after the first computes only what follows the query: the prefix ran once.
    assert (prepared.costs < prepared.tokens - 80).all()
    before = scorer.layout.features.computed
    ranked = tiny_vl_reranker.rerank(query, documents)[0]
    assert scorer.layout.features.computed - before <= 2  # the query's image and the document's, once each
    got = {doc.index: doc.relevance_score for doc in ranked.documents}
    want = official_vl.score([(as_recipe(query), as_recipe(d)) for d in documents])
    np.testing.assert_allclose([got[i] for i in range(len(documents))], want, atol=1e-4)
    assert ranked.documents[0].document in documents  # the document as it was given
    tiny_vl_reranker.rerank(query, documents)
    assert scorer.layout.features.computed - before <= 2  # kept across calls


def test_a_query_prompt_longer_than_the_token_budget_is_computed_once(official_vl):
    """An image query's prompt over several token budgets: computed once, a budget at a time, and every document
    continues it (each used to recompute what passed one budget); the scores are still the recipe's."""
    reranker = Reranker.from_pretrained("builtin:tiny-qwen3-vl-reranker", token_budget=64)
    scorer = reranker.scorer
    query = {"text": "which of these?", "image": photo(320, 256, 15)}
    documents = [f"candidate {k} " * k for k in range(1, 7)]
    prepared = scorer.prepare([(query, d) for d in documents])
    head = int(prepared.payload.head_lengths[0])
    assert head > 2 * 64
    computed, run = [0], scorer.layout.session.run

    def counted(names, feed, *args):
        computed[0] += feed["input_ids"].size
        return run(names, feed, *args)

    scorer.layout.session = types.SimpleNamespace(run=counted)
    scores = reranker.score_pairs([(query, d) for d in documents])
    assert computed[0] - scorer.tokenizer.prefix_ids.size < head + 2 * int(prepared.costs.sum())
    want = official_vl.score([(as_recipe(query), as_recipe(d)) for d in documents])
    np.testing.assert_allclose(scores, want, atol=1e-4)


def test_two_images_of_one_size_never_share_a_cache_entry(tiny_vl_reranker, official_vl):
    first, second = photo(96, 64, 21), photo(96, 64, 22)
    pairs = [({"text": "q", "image": first}, "same document"), ({"text": "q", "image": second}, "same document")]
    scorer = tiny_vl_reranker.scorer
    keys = scorer.cache_keys(scorer.prepare(pairs))
    assert keys[0] != keys[1]
    assert keys[0] == scorer.cache_keys(scorer.prepare(pairs[:1]))[0]  # the same image, the same key
    # One after the other: the second query's prefix K/V is not the first's (the prefix cache keys on image ids).
    got = np.concatenate([tiny_vl_reranker.score_pairs([pair]) for pair in pairs])
    np.testing.assert_allclose(got, official_vl.score([tuple(map(as_recipe, p)) for p in pairs]), atol=1e-4)


def test_an_image_scores_the_same_however_it_is_given(tiny_vl_reranker, tmp_path):
    image = photo(96, 64, 1)
    data = png(image)
    (tmp_path / "car.png").write_bytes(data)
    sources = [
        image,
        data,
        str(tmp_path / "car.png"),
        (tmp_path / "car.png").as_uri(),
        "data:image/png;base64," + base64.b64encode(data).decode(),
    ]
    pairs = [("a red car", {"image": source}) for source in sources]
    pairs.append(("a red car", Content((Image(data),))))
    assert np.ptp(tiny_vl_reranker.score_pairs(pairs)) == 0.0


def test_bad_inputs_are_refused_naming_the_input(tiny_vl_reranker, tiny_reranker):
    rerank = tiny_vl_reranker.rerank
    with pytest.raises(ImageRefusedError, match=r"^documents\[1\]\.image\[0\]: "):
        rerank("q", ["d", {"image": b"not an image"}])
    with pytest.raises(ImageRefusedError, match=r"^query\[1\]\.image\[1\]: "):
        rerank(["q", {"text": "q2", "image": [photo(8, 8, 1), b"GIF89a"]}], ["d"])
    with pytest.raises(InvalidInputError, match=r"^documents\[0\]: text holds the control token <\|image_pad\|>"):
        rerank("q", ["smuggled <|image_pad|>"])
    with pytest.raises(InvalidInputError, match=r"^pairs\[0\]\.query: video is not supported yet"):
        tiny_vl_reranker.score_pairs([({"video": "clip.mp4"}, "d")])
    with pytest.raises(InvalidInputError, match=r"unknown key 'audio'"):
        rerank("q", [{"audio": "x"}])
    with pytest.raises(InvalidInputError, match=r"long_documents"):
        tiny_vl_reranker.score_pairs([("q", "d")], long_documents="chunk")
    with pytest.raises(InvalidInputError, match=r"^pairs\[0\]\.document: .* takes text only, not images"):
        tiny_reranker.score_pairs([("q", {"image": png(photo(8, 8, 1))})])
    assert tiny_reranker.score_pairs([("q", Content((Text("d"),)))]).shape == (1,)


def test_the_feature_cache_stays_within_its_bound_but_keeps_the_running_call():
    def entry(tokens):
        return ((1, 2, 2), np.zeros((tokens, 4), np.float32), np.zeros((2, tokens, 4), np.float32))

    cache = ImageFeatures(max_bytes=3 * 48 * 10)  # three entries of 10 tokens
    cache.pin([1, 2])
    for key in range(1, 6):
        cache.put(key, entry(10))
    assert 1 in cache and 2 in cache and 3 not in cache and cache.bytes == 3 * 480
    cache.pin([])
    cache.put(6, entry(10))
    assert 1 not in cache and cache.bytes <= cache.max_bytes


def test_a_pair_computed_ahead_in_pieces_that_cut_its_images_scores_the_same(tiny_vl_reranker):
    scorer = tiny_vl_reranker.scorer
    pair = ({"text": "q", "image": photo(200, 120, 11)}, {"text": "doc", "image": photo(64, 64, 13)})
    item = scorer.prepare([pair])
    state = None
    for _ in range(int(item.tokens[0]) // 7 - 1):  # 7 tokens at a time: pieces end inside both images
        state = scorer.prefill(item, 0, state, 7)
    ahead = scorer.score_prepared([dataclasses.replace(item, prefilled={0: state})])[0].scores
    np.testing.assert_allclose(ahead, tiny_vl_reranker.score_pairs([pair]), atol=1e-5)


def test_a_call_or_a_piece_with_some_of_a_requests_pairs_encodes_only_their_images(tiny_vl_reranker):
    """What a scheduler relies on to bound a call: taking pairs 2 and 4 of six image pairs runs the vision encoder on
    their two images only, and a piece of pair 5 computed ahead on its image only."""
    scorer = tiny_vl_reranker.scorer
    pairs = [("which one?", {"image": photo(40 + 8 * k, 48, 70 + k)}) for k in range(6)]
    item = scorer.prepare(pairs)
    before = scorer.layout.features.computed
    scores = scorer.score_prepared([item.select([2, 4])])[0].scores
    assert scorer.layout.features.computed - before == 2
    scorer.prefill(item, 5, None, int(item.tokens[5]) - 2)
    assert scorer.layout.features.computed - before == 3
    np.testing.assert_allclose(scores, tiny_vl_reranker.score_pairs([pairs[2], pairs[4]]), atol=1e-5)


def test_images_encoded_ahead_leave_the_model_calls_none_to_encode(tiny_vl_reranker):
    """What a replica does at admission (Scorer.precompute): every image of the request encoded once, one at a time,
    before its calls; the calls then encode none, and the scores are the same."""
    scorer = tiny_vl_reranker.scorer
    pairs = [("which one?", {"image": photo(48 + 8 * k, 40, 90 + k)}) for k in range(3)]
    item = scorer.prepare(pairs)
    before = scorer.layout.features.computed
    scorer.precompute(item)
    assert scorer.layout.features.computed - before == 3
    scores = scorer.score_prepared([item])[0].scores
    assert scorer.layout.features.computed - before == 3
    np.testing.assert_allclose(scores, tiny_vl_reranker.score_pairs(pairs), atol=1e-5)


def test_images_the_calls_will_encode_are_charged_once_to_the_first_pair_that_names_them(tiny_vl_reranker):
    """What a replica's scheduler packs calls by (Scorer.with_pending_work): a pair's tokens, plus the vision work of
    each image not encoded yet, charged once, to its first pair; nothing once the images are encoded ahead. A piece
    computed ahead counts the images it encodes as part of its work."""
    scorer = tiny_vl_reranker.scorer
    first, second = photo(120, 64, 140), photo(64, 96, 141)
    pairs = [("q", {"image": first}), ("q", {"text": "d", "image": second}), ("q", {"image": first}), ("q", "text")]
    item = scorer.prepare(pairs)
    media = item.payload.media
    cost = {key: scorer.layout.vision_cost.of_image(int(np.prod(entry.grid))) for key, entry in media.items()}
    assert all(c > 0 for c in cost.values())
    charged = scorer.with_pending_work(item).costs - item.costs
    keys = [next(iter(item.payload.media_of([i]) or {None: 0})) for i in range(len(pairs))]
    np.testing.assert_array_equal(charged, [cost[keys[0]], cost[keys[1]], 0, 0])
    before = scorer.layout.features.computed
    state = scorer.prefill(item, 1, None, cost[keys[1]])  # the piece's work: encoding the document's image only
    assert scorer.layout.features.computed - before == 1 and state.kv is None
    scorer.precompute(item)
    np.testing.assert_array_equal(scorer.with_pending_work(item).costs, item.costs)


def test_a_screenshot_costs_more_to_encode_than_its_tokens_at_the_2b_shape():
    """At Qwen3-VL-Reranker-2B's shape a 1280 × 720 screenshot (3,520 patches, 880 tokens) takes more multiply-adds
    in the vision encoder than its 880 tokens in the decoder, and its attention makes a larger image dearer per
    patch."""
    config = {"text_config": FULL_SIZE_TEXT, "vision_config": FULL_SIZE_VISION}
    cost = VisionCost.of_config(config)
    assert 880 < cost.of_image(44 * 80) < 2 * 880
    assert cost.of_image(2 * 44 * 80) > 2 * cost.of_image(44 * 80)


def test_image_tokens_read_from_headers_and_a_urls_counted_at_most_for_a_budget(tiny_vl_reranker):
    """Encoded bytes: their header's tokens, exact either way; a URL (its size unknown before it is fetched): 0, or
    with `at_most` the recipe's most, 1,800 pads and the two vision markers."""
    scorer = tiny_vl_reranker.scorer
    encoded = png(photo(64, 48, 5))
    url = {"image": "https://example.com/a.png"}
    exact = scorer.image_tokens([("q", {"image": encoded})])
    assert exact == scorer.image_tokens([("q", {"image": encoded})], at_most=True) > 2
    assert scorer.image_tokens([("q", url), ("q", {"image": encoded})]) == exact
    assert scorer.image_tokens([("q", url), ("q", {"image": encoded})], at_most=True) == 1802 + exact


def test_the_cli_ranks_image_documents_for_an_image_query(tiny_vl_reranker, tmp_path, capsys):
    for k in range(2):
        (tmp_path / f"p{k}.png").write_bytes(png(photo(80, 60, 30 + k)))
    (tmp_path / "docs.txt").write_text("a text document\n")
    argv = ["score", "--model", "builtin:tiny-qwen3-vl-reranker", "--query", "which photo?", "--json"]
    argv += ["--query-image", str(tmp_path / "p0.png"), "--documents", str(tmp_path / "docs.txt")]
    argv += ["--image", str(tmp_path / "p0.png"), "--image", str(tmp_path / "p1.png")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(r["index"] for r in out["results"]) == [0, 1, 2]
    assert {"image": str(tmp_path / "p1.png")} in [r["document"] for r in out["results"]]
    query = {"text": "which photo?", "image": str(tmp_path / "p0.png")}
    documents = ["a text document", {"image": str(tmp_path / "p0.png")}, {"image": str(tmp_path / "p1.png")}]
    want = tiny_vl_reranker.compute_scores(query, documents)[0]
    got = {r["index"]: r["relevance_score"] for r in out["results"]}
    np.testing.assert_allclose([got[i] for i in range(3)], want, atol=1e-6)
    assert main([a for a in argv if a != "--json"]) == 0  # the table names each image once, by its path
    assert f"[image {tmp_path / 'p1.png'}]" in capsys.readouterr().out


def test_an_int8_encoder_the_export_lacks_is_an_error_naming_the_option(tiny_vl_reranker):
    folder = tiny_vl_reranker.scorer.folder.path  # exported in f32 only, as a first load does
    assert not (folder / "vision_int8.onnx").exists()
    with pytest.raises(ModelFormatError, match="images.encoder_dtype: int8 needs vision_int8.onnx"):
        Reranker.from_pretrained(folder, images={"encoder_dtype": "int8"})


def test_a_bf16_encoder_computes_the_f32_graph_in_bf16_where_the_cpu_multiplies_it(tiny_vl_reranker, caplog):
    folder = tiny_vl_reranker.scorer.folder.path
    with caplog.at_level(logging.WARNING, logger="rerank_core"):
        bf16 = Reranker.from_pretrained(folder, images={"encoder_dtype": "bf16"})
    image = {"image": photo(90, 70, 21)}
    f32_features, bf16_features = (vision_features(r, image) for r in (tiny_vl_reranker, bf16))
    pairs = PAIRS + MORE
    if not cpu_runs_bf16():  # one line names the option, and the encoder runs in f32
        assert [r.getMessage() for r in caplog.records] == [
            f"images.encoder_dtype bf16: {NO_BF16}; running the f32 graph in f32"
        ]
        np.testing.assert_array_equal(bf16_features, f32_features)
        return
    assert bf16.scorer.layout.vision.get_providers() == ["OpenVINO CPU (bf16)"] and not caplog.records
    # Unset, the encoder follows the decoder: f32 (exact) beside f32, bf16 beside bf16.
    assert tiny_vl_reranker.scorer.layout.vision.get_providers() == ["CPUExecutionProvider"]
    beside_bf16 = Reranker.from_pretrained(folder, dtype="bf16").scorer.layout.vision
    assert beside_bf16.get_providers() == ["OpenVINO CPU (bf16)"]
    assert 0 < np.abs(bf16_features - f32_features).max() < 0.02 * np.abs(f32_features).max()
    # Each image is its own encoder call, so a pair's score does not depend on what shares its call.
    together = bf16.score_pairs(pairs)
    alone = Reranker.from_pretrained(folder, images={"encoder_dtype": "bf16"})
    np.testing.assert_allclose([alone.score_pairs([pair])[0] for pair in reversed(pairs)], together[::-1], atol=1e-6)
    np.testing.assert_allclose(together, tiny_vl_reranker.score_pairs(pairs), atol=2e-3)


def test_rerank_export_writes_f32_int8_and_f16_graphs_that_load_from_the_folder(tiny_vl_reranker, tiny_vl_export_all):
    out = tiny_vl_export_all  # made by `rerank export … --dtype f32,int8,f16`
    pairs = PAIRS + [
        ({"text": [f"q {k}"]}, {"text": [f"word {k} " * k], "image": [photo(40 + k, 50, k)]}) for k in range(8)
    ]
    f32 = Reranker.from_pretrained(out).score_pairs(pairs)
    np.testing.assert_allclose(f32, tiny_vl_reranker.score_pairs(pairs), atol=1e-6)  # the cache's export is the same
    int8_reranker = Reranker.from_pretrained(out, dtype="int8")
    int8 = int8_reranker.score_pairs(pairs)
    # Random weights: a proxy only (docs/models.md); on the tiny model int8 moved scores by ~1e-3, Spearman 0.997.
    assert np.abs(int8 - f32).max() < 0.02 and spearmanr(int8, f32).statistic > 0.95
    # The export has an int8 vision encoder too (the blocks' linear layers in int8, the mergers that make the
    # features in f32); int8 runs it only when asked, else the f32 graph: in bf16 where this CPU computes bf16.
    nodes = collections.Counter(n.op_type for n in onnx.load(str(out / "vision_int8.onnx")).graph.node)
    assert nodes["MatMulIntegerToFloat"] == 4 * 3 and nodes["Gemm"] == 2 * 3  # 3 blocks; 3 mergers (2 DeepStack)
    image = {"image": photo(90, 70, 21)}
    int8_encoder = Reranker.from_pretrained(out, dtype="int8", images={"encoder_dtype": "int8"})
    beside_int8 = Reranker.from_pretrained(out, images={"encoder_dtype": "bf16" if bf16_available() else "f32"})
    f32_features, int8_default, int8_asked, expected_default = (
        vision_features(r, image) for r in (Reranker.from_pretrained(out), int8_reranker, int8_encoder, beside_int8)
    )
    np.testing.assert_array_equal(int8_default, expected_default)
    assert 0 < np.abs(int8_asked - f32_features).max() < 0.1 * np.abs(f32_features).max()
    # The f16 decoder (the vision encoder stays f32), checked on the CPU provider (slow there: the recipe's pairs
    # only); the graph CUDA loads by default.
    f16 = Reranker.from_pretrained(out, dtype="f16").score_pairs(PAIRS)
    np.testing.assert_allclose(f16, f32[: len(PAIRS)], atol=1e-3)
    assert ModelFolder.read(out).choose_graph(None, "cuda").path.name == "model_f16.onnx"
