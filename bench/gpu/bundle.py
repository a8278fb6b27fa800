"""The GPU box's offline bundle: the packages a GPU node without network needs beyond its image, resolved for its
Python, installed into one folder, packed as tar.xz and split into pieces small enough to carry one at a time.

`make gpu-bundle` runs it here (where the package index is reachable); `bench/gpu/run.sh` joins, checks and unpacks
the pieces there and puts the folder first on PYTHONPATH. Each piece lies in its own git-ignored folder
(`gpu-bundle/part-NN/`), so each can be carried alone.

Run: python bench/gpu/bundle.py [--out gpu-bundle] [--piece-mib 56] [--python 3.12]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What the GPU box lacks: the CUDA runtime of ONNX Runtime, Ray with Serve and Data, Serve's web stack, our own
# dependencies it does not have (pydantic, pyyaml, tiktoken), and the bench's HTTP client.
REQUIREMENTS = [
    "onnxruntime-gpu==1.31.1",
    "ray[serve,data]==2.60.0",
    "fastapi",
    "uvicorn",
    "pydantic",
    "pyyaml",
    "tiktoken",
    "httpx",
]
# What its image has (and what those need): left out, so the bundle does not shadow them with other versions.
IMAGE_HAS = {
    "aiohappyeyeballs", "aiohttp", "aiosignal", "attrs", "certifi", "charset-normalizer", "filelock", "flatbuffers",
    "frozenlist", "fsspec", "grpcio", "huggingface-hub", "idna", "jinja2", "markupsafe", "msgpack", "multidict",
    "numpy", "onnx", "onnxruntime", "packaging", "pandas", "prometheus-client", "propcache", "protobuf", "pyarrow",
    "python-dateutil", "regex", "requests", "six", "tokenizers", "torch", "transformers", "typing-extensions", "tzdata",
    "urllib3", "yarl",
}  # fmt: skip
# Files no GPU run of ours opens: ONNX Runtime's TensorRT provider, Ray's Java jars and the dashboard's source maps.
STRIP = ["onnxruntime/capi/libonnxruntime_providers_tensorrt.so", "ray/jars", "ray/dashboard/client/build/**/*.map"]
PLATFORM = "x86_64-manylinux_2_28"
PIECE = "bundle.tar.xz.part"
SUMS = "SHA256SUMS"


def uv() -> str:
    """The uv the Makefile installs beside this Python."""
    return str(Path(sys.executable).with_name("uv"))


def pinned_requirements(python: str) -> list[str]:
    """REQUIREMENTS resolved for `python` on Linux x86_64, as name==version lines, without what the image has."""
    with tempfile.TemporaryDirectory() as tmp:
        wanted, pinned = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        wanted.write_text("\n".join(REQUIREMENTS) + "\n")
        subprocess.run(
            [uv(), "pip", "compile", str(wanted), "--python-version", python, "--python-platform", PLATFORM]
            + ["--no-header", "--no-annotate", "-q", "-o", str(pinned)],
            check=True,
        )
        lines = [line.strip() for line in pinned.read_text().splitlines() if "==" in line]
    return [line for line in lines if _name(line) not in IMAGE_HAS]


def _name(requirement: str) -> str:
    """A requirement's normalized project name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", requirement.split("==")[0].split("[")[0]).lower()


def install(requirements: list[str], site: Path, python: str) -> None:
    """Install `requirements` (wheels only, nothing beyond them) into folder `site` for `python`, then strip it."""
    subprocess.run(
        [uv(), "pip", "install", "-q", "--target", str(site), "--python-version", python, "--python-platform", PLATFORM]
        + ["--only-binary", ":all:", "--no-deps", *requirements],
        check=True,
    )
    for pattern in STRIP:
        for path in site.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def pack(site: Path, out: Path, piece_bytes: int) -> list[Path]:
    """`site` as one tar.xz stream split into pieces of at most `piece_bytes`, each in its own folder `out/part-NN/`
    with a SHA256SUMS line; returns the pieces. Any earlier bundle in `out` is replaced."""
    shutil.rmtree(out, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(site), "-cf", "-", "."], stdout=subprocess.PIPE)
    xz = subprocess.Popen(["xz", "-T0", "-6", "-c"], stdin=tar.stdout, stdout=subprocess.PIPE)
    tar.stdout.close()
    pieces = []
    while chunk := _read_exactly(xz.stdout, piece_bytes):
        part = out / f"part-{len(pieces):02d}"
        part.mkdir(parents=True)
        piece = part / f"{PIECE}{len(pieces):02d}"
        piece.write_bytes(chunk)
        (part / SUMS).write_text(f"{hashlib.sha256(chunk).hexdigest()}  {piece.name}\n")
        pieces.append(piece)
    if tar.wait() or xz.wait():
        raise RuntimeError("packing the bundle failed (tar or xz)")
    (out / "PIECES").write_text(f"{len(pieces)}\n")
    for piece in pieces:  # each folder says how many pieces make the whole, so a missing one is named
        (piece.parent / "PIECES").write_text(f"{len(pieces)}\n")
    return pieces


def _read_exactly(stream, size: int) -> bytes:
    """Up to `size` bytes from `stream`, short only at its end."""
    chunks, left = [], size
    while left and (chunk := stream.read(left)):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main() -> None:
    """Resolve, install, strip, pack; print what to carry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "gpu-bundle")
    parser.add_argument("--piece-mib", type=float, default=56.0, help="largest piece (a carry: 64 MiB, tree too)")
    parser.add_argument("--python", default="3.12", help="the GPU box's Python (major.minor)")
    args = parser.parse_args()
    requirements = pinned_requirements(args.python)
    print(f"{len(requirements)} packages for Python {args.python} ({PLATFORM}): {' '.join(requirements)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        install(requirements, site, args.python)
        pieces = pack(site, args.out, int(args.piece_mib * 2**20))
    total = sum(p.stat().st_size for p in pieces) / 2**20
    print(f"{len(pieces)} pieces, {total:.0f} MiB in all, in {args.out}/part-*: carry each folder in its own call,")
    print("then run `bench/gpu/run.sh` there (it joins, checks and unpacks them).")


if __name__ == "__main__":
    main()
