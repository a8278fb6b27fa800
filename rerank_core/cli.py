"""The `rerank` command line: export, score, tiny-model, serve, offline.

The one composition root: the only module of the library that imports the apps (`serve`, `pipelines`), and only
inside the commands that run them (tests/test_layers.py keeps it so).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .api import Reranker
from .errors import InvalidInputError, RerankError
from .export import export_checkpoint
from .tiny_model import build_tiny_model

log = logging.getLogger("rerank")
OUR_LOGGERS = ("rerank", "rerank_core", "serve", "pipelines")


def _read_documents(source: str) -> list[str]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _documents(args: argparse.Namespace) -> list:
    """The text documents (one per line of --documents, stdin unless only images are given), then one document
    per --image."""
    texts = _read_documents(args.documents or "-") if args.documents or not args.image else []
    return texts + [{"image": source} for source in args.image or []]


def _query(args: argparse.Namespace):
    if not args.query and not args.query_image:
        raise InvalidInputError("query", "give --query, --query-image or both")
    if not args.query_image:
        return args.query
    return {"text": [args.query] if args.query else [], "image": args.query_image}


def _shown(side) -> str:
    """A query or document as one line: its text, and each image's source (a path or URL; other sources by kind)."""
    if isinstance(side, str):
        return side
    images, texts = side.get("image", []), side.get("text", [])
    images = images if isinstance(images, list) else [images]
    parts = [texts] if isinstance(texts, str) else list(texts)
    return " ".join(parts + [f"[image {s if isinstance(s, str) else type(s).__name__}]" for s in images])


def cmd_export(args: argparse.Namespace) -> int:
    """Export a Hugging Face reranker checkpoint (Qwen3-Reranker, Qwen3-VL-Reranker) to ONNX."""
    out = export_checkpoint(
        args.src,
        args.out,
        dtypes=args.dtype.split(","),
        cuda_dtypes=args.cuda_dtype.split(",") if args.cuda_dtype else (),
        fused_dtypes=args.fused_dtype.split(",") if args.fused_dtype else (),
        paged_dtypes=args.paged_dtype.split(",") if args.paged_dtype else (),
        revision=args.revision,
        max_length=args.max_length,
        overwrite=args.overwrite,
        past_kv=not args.no_past_kv,
    )
    print(f"exported {args.src} → {out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Rank documents (one per line, and images) for a query (text, images or both) and print the ranking."""
    query, documents = _query(args), _documents(args)
    if args.endpoint:
        reranker = Reranker.from_endpoint(args.endpoint, instruction=args.instruction)
    else:
        images = {"fetch_urls": args.fetch_image_urls}
        reranker = Reranker.from_pretrained(args.model, dtype=args.dtype, instruction=args.instruction, images=images)
    (result,) = reranker.rerank(query, documents, top_k=args.top_k)
    if args.json:
        rows = [
            {"rank": d.rank, "index": d.index, "relevance_score": d.relevance_score, "document": d.document}
            for d in result.documents
        ]
        print(json.dumps({"query": result.query, "results": rows}, ensure_ascii=False, indent=2))
    else:
        print(f"Query: {_shown(result.query)}")
        for d in result.documents:
            print(f"  {d.rank:>3}. {d.relevance_score:.4f}  [{d.index}] {_shown(d.document)}")
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    """Build and export a deterministic random Qwen3 reranker (tiny, or the 0.6B shape)."""
    out = build_tiny_model(args.out, full_size=args.full_size, dtypes=args.dtype.split(","), overwrite=args.overwrite)
    print(f"tiny model written to {out} (random weights: its scores mean nothing)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Start local Ray and the HTTP endpoint in the foreground."""
    from serve.launcher import run_foreground

    return run_foreground(config_path=args.config, models=args.model, host=args.host, port=args.port)


def cmd_offline(args: argparse.Namespace) -> int:
    """Run the offline Parquet scoring job."""
    from pipelines.offline import run_from_cli

    return run_from_cli(config_path=args.config, model=args.model, input_path=args.input, output_path=args.output)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `rerank` command."""
    parser = argparse.ArgumentParser(prog="rerank", description="Rerank documents with Qwen3-Reranker models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a HF Qwen3-Reranker checkpoint (folder or Hub id) to ONNX")
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="f32", help="comma-separated: f32, f16, int8 (default f32; bf16 runs f32's)")
    p.add_argument("--cuda-dtype", help="also the GPU graphs (right padding, fused attention): f16, f32")
    p.add_argument(
        "--fused-dtype", help="also GPU graphs on ONNX Runtime's fused operators (graph_variant: fused): f16, f32"
    )
    p.add_argument(
        "--paged-dtype",
        help="also the fused GPU graphs on packed tokens with a block K/V cache (graph_variant: paged): f16, f32",
    )
    p.add_argument("--revision")
    p.add_argument(
        "--max-length", type=int, help="tokens per pair (default: the model family's; Qwen3: 8192, Qwen3-VL: 10240)"
    )
    p.add_argument(
        "--no-past-kv",
        action="store_true",
        help="plain graphs (input_ids, attention_mask → logit) for other runtimes; no prefix sharing",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("score", help="rank documents for one query")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="export folder, builtin:NAME or Hub repo id")
    source.add_argument("--endpoint", help="URL of a running `rerank serve` endpoint instead of a local model")
    p.add_argument("--query", help="the query's text")
    p.add_argument(
        "--query-image", action="append", help="an image of the query: path, file:// or http(s) URL (repeatable)"
    )
    p.add_argument("--documents", help="file with one document per line, or - for stdin (the default without --image)")
    p.add_argument("--image", action="append", help="an image document: path or URL (repeatable; VL models)")
    p.add_argument("--fetch-image-urls", action="store_true", help="fetch http(s) image URLs (public hosts only)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--dtype", default=None, help="f32, f16, int8 or bf16 (default: exact f32 on a CPU, f16 on a GPU)")
    p.add_argument("--instruction")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("tiny-model", help="build a deterministic random Qwen3 reranker and export it")
    p.add_argument("out")
    p.add_argument(
        "--full-size",
        action="store_true",
        help="Qwen3-Reranker-0.6B's exact shape and Qwen's real vocabulary, for benchmarks",
    )
    p.add_argument("--dtype", default="f32")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("serve", help="run the HTTP rerank endpoint on local Ray")
    p.add_argument("--config", help="Serve config YAML (default: one replica per node, fitted to the cluster)")
    p.add_argument(
        "--model",
        action="append",
        help="the model (folder, Hub id such as Qwen/Qwen3-Reranker-0.6B, builtin:NAME); overrides the config's. "
        "Give it again to serve several, each named as given (a folder by its name), the first the default",
    )
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("offline", help="score a Parquet dataset with Ray Data")
    p.add_argument("--config", help="offline job YAML (optional: without it give --model, --input and --output)")
    p.add_argument("--model", help="the model (folder, Hub id); overrides the config's")
    p.add_argument("--input", help="Parquet file or folder (local path or filesystem URI)")
    p.add_argument("--output", help="output folder")
    p.set_defaults(func=cmd_offline)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rerank` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in OUR_LOGGERS:  # our progress at INFO; other libraries' INFO lines are their internals
        logging.getLogger(ours).setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RerankError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
