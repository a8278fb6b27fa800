"""Generate the small sample datasets the demo and docs use (deterministic): python -m pipelines.sample_data DIR.
The image dataset's pictures are drawn here (shapes, bars), so the project ships no photos."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

QUERIES = [
    "What is machine learning?",
    "How to make coffee?",
    "What is Python programming?",
    "Where is the Eiffel Tower?",
    "How do rerankers improve search?",
]
DOCUMENTS = [
    "Machine learning is a subset of AI.",
    "ML algorithms can learn from data.",
    "Coffee is brewed from roasted beans.",
    "Coffee can be made with a French press.",
    "Python is a programming language.",
    "Python is great for beginners.",
    "The Eiffel Tower is in Paris, France.",
    "Paris is the capital of France.",
    "A reranker scores each query-document pair with a cross-encoder.",
    "The weather is sunny today.",
    "Pizza is a popular food.",
    "Le café est une boisson. 咖啡是一种饮料。",
]


def make_pairs(n: int = 300, seed: int = 0) -> pa.Table:
    """n (id, query, document) rows, a few of them deliberately bad (null/empty) to show error handling."""
    rng = random.Random(seed)
    ids, queries, docs = [], [], []
    for i in range(n):
        ids.append(f"row-{i:04d}")
        queries.append(rng.choice(QUERIES))
        doc = rng.choice(DOCUMENTS)
        docs.append(None if i % 97 == 13 else ("" if i % 89 == 7 else doc))
    return pa.table({"id": ids, "query": queries, "document": docs})


def make_grouped(seed: int = 0) -> pa.Table:
    """One row per query with a list column of candidates."""
    rng = random.Random(seed)
    return pa.table(
        {
            "id": [f"q-{i}" for i in range(len(QUERIES))],
            "query": QUERIES,
            "documents": [rng.sample(DOCUMENTS, 6) for _ in QUERIES],
        }
    )


PICTURES = {  # name: (caption, colour, what is drawn)
    "red-circle": ("a red circle", (220, 30, 30), "circle"),
    "blue-square": ("a blue square", (30, 60, 220), "square"),
    "green-bars": ("a bar chart of quarterly sales", (40, 160, 60), "bars"),
    "orange-stripes": ("orange stripes", (240, 140, 20), "stripes"),
}
IMAGE_QUERIES = ["a chart of the quarterly sales", "something round and red"]


def picture(kind: str, colour: tuple[int, int, int], size: int = 96) -> bytes:
    """A PNG of one simple drawing on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    if kind == "circle":
        draw.ellipse((12, 12, size - 12, size - 12), fill=colour)
    elif kind == "square":
        draw.rectangle((16, 16, size - 16, size - 16), fill=colour)
    elif kind == "bars":
        for k, height in enumerate((30, 55, 42, 75)):
            draw.rectangle((10 + 20 * k, size - 8 - height, 24 + 20 * k, size - 8), fill=colour)
    else:
        for y in range(0, size, 16):
            draw.rectangle((0, y, size, y + 7), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_images() -> pa.Table:
    """Every image query against every picture: (id, query, caption, image as PNG bytes)."""
    rows = [(q, name) for q in IMAGE_QUERIES for name in PICTURES]
    return pa.table(
        {
            "id": [f"img-{i:02d}" for i in range(len(rows))],
            "query": [q for q, _ in rows],
            "caption": [PICTURES[name][0] for _, name in rows],
            "image": pa.array([picture(PICTURES[name][2], PICTURES[name][1]) for _, name in rows], pa.binary()),
        }
    )


def main(out: str) -> None:
    """Write sample_pairs.parquet, sample_grouped.parquet, sample_images.parquet and the pictures as PNG files."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(make_pairs(), folder / "sample_pairs.parquet")
    pq.write_table(make_grouped(), folder / "sample_grouped.parquet")
    pq.write_table(make_images(), folder / "sample_images.parquet")
    (folder / "images").mkdir(exist_ok=True)
    for name, (_, colour, kind) in PICTURES.items():
        (folder / "images" / f"{name}.png").write_bytes(picture(kind, colour))
    print(f"wrote {folder}/sample_pairs.parquet, sample_grouped.parquet, sample_images.parquet and images/")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "configs/demo/data")
