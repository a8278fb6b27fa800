"""The offline job on Parquet with images, scored by the built-in tiny Qwen3-VL-Reranker: a binary column of encoded
images (pairs layout) and struct documents whose images are paths (grouped layout), every row out exactly once with
the library's score, a bad image flagged in `error` without losing its row."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.config import OfflineConfig
from pipelines.offline import run_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]
MODEL = {"model": "builtin:tiny-qwen3-vl-reranker", "device": "cpu", "intra_op_threads": 1}
COMPUTE = {"concurrency": 1, "num_cpus": 0.5, "batch_size": 4}


def png(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def job(tmp_path, name, table, **overrides):
    pq.write_table(table, tmp_path / f"{name}.parquet")
    cfg = OfflineConfig.from_dict(
        {
            "model": MODEL,
            "input": str(tmp_path / f"{name}.parquet"),
            "output": str(tmp_path / f"{name}-out"),
            "compute": COMPUTE,
            **overrides,
        }
    )
    summary = run_job(cfg)
    rows = pq.read_table(tmp_path / f"{name}-out").to_pylist()
    assert summary.rows == len(rows) == table.num_rows
    assert sorted(r["id"] for r in rows) == sorted(table.column("id").to_pylist())  # every row exactly once
    return {r["id"]: r for r in rows}


def test_image_bytes_and_image_paths_score_as_the_library_and_a_bad_image_is_flagged(tmp_path, tiny_vl_reranker):
    images = [png(48 + 8 * i, 40, i) for i in range(5)]
    images[3] = images[3][:100]  # truncated: flagged, not dropped
    queries = ["a red chart", "sales", None, "a photo", "a photo", "sales"]
    captions = ["a caption", None, "x", "y", None, "only text"]
    pictures = [*images, None]
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(6)],
            "query": queries,
            "caption": captions,
            "picture": pa.array(pictures, pa.binary()),
        }
    )
    rows = job(tmp_path, "pairs", table, columns={"document": "caption", "document_image": "picture"})
    for i in (0, 1, 4, 5):
        document = captions[i] if pictures[i] is None else {"image": pictures[i], "text": captions[i] or []}
        expected = tiny_vl_reranker.score_pairs([(queries[i], document)])[0]
        assert rows[f"r{i}"]["error"] is None and rows[f"r{i}"]["score"] == pytest.approx(float(expected), abs=1e-5)
    assert "null" in rows["r2"]["error"] and rows["r2"]["score"] is None
    assert "ImageRefusedError" in rows["r3"]["error"] and "cannot be decoded" in rows["r3"]["error"], rows["r3"][
        "error"
    ]
    assert rows["r3"]["score"] is None and rows["r3"]["picture"] == images[3]  # the row as it came in

    paths = []
    for i, data in enumerate(images[:3]):
        paths.append(str(tmp_path / f"page-{i}.png"))
        (tmp_path / f"page-{i}.png").write_bytes(data)
    item = pa.struct([("text", pa.string()), ("image", pa.string())])
    documents = [
        [{"text": "first page", "image": paths[0]}, {"text": "plain", "image": None}],
        [{"text": None, "image": paths[1]}, {"text": "caption", "image": paths[2]}],
        [{"text": None, "image": str(tmp_path / "missing.png")}],
    ]
    grouped = pa.table(
        {
            "id": ["g0", "g1", "g2"],
            "query": ["q one", "q two", "q three"],
            "documents": pa.array(documents, pa.list_(item)),
        }
    )
    rows = job(tmp_path, "grouped", grouped, layout="grouped", top_k=1)
    for g, docs in enumerate(documents[:2]):
        library = [{k: v for k, v in d.items() if v is not None} for d in docs]
        library = [d if "image" in d else d["text"] for d in library]
        expected = tiny_vl_reranker.score_pairs([(f"q {('one', 'two')[g]}", d) for d in library])
        assert rows[f"g{g}"]["scores"] == pytest.approx(expected.tolist(), abs=1e-5)
        assert rows[f"g{g}"]["ranking"] == [int(np.argmax(expected))]
    assert rows["g2"]["scores"] is None and "missing.png" in rows["g2"]["error"]
