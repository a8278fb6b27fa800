"""`rerank serve` on one GPU (issue #39 item 2): two model replicas sharing it (`num_gpus: 0.5`) behind the gateway,
started by the command users run, under a bounded mixed loopback load — interactive requests (8–20 documents) and
bulk ones (200–1,000), in the Cohere, TEI and NIM dialects. Prints pairs/s and p50/p95/p99 per request size, alone
and mixed, with the GPU's busy share (nvidia-smi, sampled) and the host CPUs the whole stack kept busy.

The config is configs/serve.yaml with the bench model (random weights, Qwen3-Reranker-0.6B's shape, f16 GPU graphs),
fixed replicas instead of autoscaling, and the GPU call sizes of `--token-budget`/`--max-rows` when given.
`--smoke` runs it all on the CPU with the tiny model and small counts, to check the script (measures nothing).

`--variants` compares settings, one endpoint each (call sizes, replicas, gateways, layout, the scheduler's call
target and interactive window), and ends with one line per variant side by side: the tuning the issue asks for.

Run: python bench/gpu/serving.py [--bulk 12] [--interactive 120] [--variants 'default;token_budget=16384'] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.common import WORDS, cpu_description, print_table  # noqa: E402
from bench.gpu.scoring import bench_models, device_or_none  # noqa: E402
from bench.gpu.usage import Usage  # noqa: E402
from bench.serve import closed_loop  # noqa: E402

PORT = 8791
DIALECTS = ("cohere", "tei", "nim")


def serve_config(export: Path, device: str, args) -> dict:
    """configs/serve.yaml for this run: the bench model, fixed replicas sharing the GPU, the call sizes asked for."""
    config = yaml.safe_load((REPO / "configs/serve.yaml").read_text())
    app = config["applications"][0]
    model = app["args"]["model"]
    model.update({"model": str(export), "dtype": "f16", "device": device, "graph_variant": args.graph_variant})
    for key, value in (("token_budget", args.token_budget), ("max_rows_per_call", args.max_rows)):
        if value:
            model[key] = value
    reranker, gateway = (next(d for d in app["deployments"] if d["name"] == name) for name in ("Reranker", "Gateway"))
    reranker.pop("autoscaling_config")
    reranker["num_replicas"] = args.replicas
    if device == "cuda":
        reranker["ray_actor_options"] = {"num_cpus": 2, "num_gpus": 1 / args.replicas}
    else:  # smoke: CPU replicas small enough for a 2-core machine
        reranker["ray_actor_options"] = {"num_cpus": 0.5, "num_gpus": 0}
        model["intra_op_threads"] = 1
    gateway["num_replicas"] = args.gateways
    for key in ("call_target_s", "interactive_window_s"):  # the scheduler's, where a variant sets them
        if getattr(args, key, None) is not None:
            reranker["user_config"][key] = getattr(args, key)
    config["http_options"] = {"host": "127.0.0.1", "port": args.port}
    return config


def documents(n: int, rng: random.Random) -> list[str]:
    """`n` documents of 20–330 words (≈ 30–450 tokens), each different."""
    return [f"{rng.randint(0, 10**9)} " + " ".join(rng.choices(WORDS, k=rng.randint(20, 330))) for _ in range(n)]


def request(dialect: str, query: str, docs: list[str], model: str) -> tuple[str, dict]:
    """(route, body) of one rerank request in `dialect`."""
    if dialect == "tei":
        return "/rerank", {"query": query, "texts": docs}
    if dialect == "nim":
        return "/v1/ranking", {"model": model, "query": {"text": query}, "passages": [{"text": d} for d in docs]}
    return "/v1/rerank", {"query": query, "documents": docs, "top_n": 5}


def workload(count: int, sizes: tuple[int, int], model: str, rng: random.Random) -> list[tuple[str, dict, int]]:
    """`count` requests of `sizes` documents each, the dialects in turn: (route, body, documents)."""
    out = []
    for i in range(count):
        docs = documents(rng.randint(*sizes), rng)
        route, body = request(DIALECTS[i % len(DIALECTS)], f"query {i}: what do these say?", docs, model)
        out.append((route, body, len(docs)))
    return out


def row(phase: str, label: str, clients: int, result: dict) -> list:
    """One table row of a load's result."""
    lat = sorted(result["latencies"])

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    median = statistics.median(lat) if lat else float("nan")
    rate = result["pairs"] / result["seconds"]
    return [phase, label, clients, len(lat), rate, median, pick(0.95), pick(0.99), result["errors"]]


def start_endpoint(config: dict, folder: Path, port: int, timeout_s: float) -> subprocess.Popen:
    """`rerank serve --config` (its own local Ray), once /health answers."""
    from serve.launcher import wait_healthy

    path = folder / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "rerank_core.cli", "serve", "--config", str(path), "--port", str(port)]
    log = open(folder / "serve.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout_s=timeout_s)
    except TimeoutError:
        stop_endpoint(proc)
        log_text = (folder / "serve.log").read_text()[-4000:]
        raise SystemExit(f"the endpoint did not come up; its log:\n{log_text}") from None
    return proc


def stop_endpoint(proc: subprocess.Popen) -> None:
    """SIGTERM (the launcher stops Serve and Ray cleanly), then wait."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# What a variant may set (`--variants`): the app's call sizes and layout, the deployments, the scheduler's user_config.
SETTINGS = {
    "token_budget": int,
    "max_rows": int,
    "graph_variant": str,
    "replicas": int,
    "gateways": int,
    "call_target_s": float,
    "interactive_window_s": float,
}


def parse_variants(text: str) -> list[dict]:
    """`a=1,b=2;c=3` → [{a: 1, b: 2}, {c: 3}]; `default` (or an empty part) is no change."""
    variants = []
    for part in text.split(";"):
        settings = {}
        for item in filter(None, part.strip().split(",")):
            if item == "default":
                continue
            key, _, value = item.partition("=")
            if key not in SETTINGS:
                raise SystemExit(f"--variants: unknown setting {key!r}; choose from {', '.join(SETTINGS)}")
            settings[key] = SETTINGS[key](value)
        variants.append(settings)
    return variants


def measure(args, settings: dict, export: Path, device: str, bulk_sizes: tuple[int, int]) -> tuple[list, Usage, float]:
    """Start the endpoint with `settings` over `args`, run the loads alone and mixed, stop it: (rows, what the mixed
    load used, its pairs/s in all)."""
    run = argparse.Namespace(**{**vars(args), **settings})
    rng = random.Random(0)  # every variant gets the same requests
    with tempfile.TemporaryDirectory(prefix="gpu-serve-") as tmp:
        proc = start_endpoint(serve_config(export, device, run), Path(tmp), args.port, 120 if args.smoke else 900)
        url = f"http://127.0.0.1:{args.port}"
        try:
            model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
            # different documents in every phase, so the score cache answers none of them
            interactive = workload(args.interactive, (8, 20), model, rng)
            interactive_alone = workload(max(2, args.interactive // 3), (8, 20), model, rng)
            bulk = workload(args.bulk, bulk_sizes, model, rng)
            closed_loop(url, workload(4, (8, 20), model, rng), 2)  # warm-up: connections, first calls
            alone = closed_loop(url, interactive_alone, args.interactive_clients)
            mixed_bulk: dict = {}
            with Usage(gpu=not args.smoke) as usage:
                load = threading.Thread(target=lambda: mixed_bulk.update(closed_loop(url, bulk, args.bulk_clients)))
                load.start()
                mixed_small = closed_loop(url, interactive, args.interactive_clients)
                load.join()
        finally:
            stop_endpoint(proc)
    rows = [
        row("interactive alone", "8–20 docs", args.interactive_clients, alone),
        row("mixed", "8–20 docs", args.interactive_clients, mixed_small),
        row("mixed", f"{bulk_sizes[0]}–{bulk_sizes[1]} docs", args.bulk_clients, mixed_bulk),
    ]
    seconds = max(mixed_bulk["seconds"], mixed_small["seconds"])
    return rows, usage, (mixed_bulk["pairs"] + mixed_small["pairs"]) / seconds


def main() -> None:
    """Per variant: start the endpoint, run the loads, print its table; then one line per variant side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk", type=int, default=12, help="bulk requests (200–1,000 documents)")
    parser.add_argument("--interactive", type=int, default=120, help="interactive requests (8–20 documents)")
    parser.add_argument("--bulk-clients", type=int, default=2)
    parser.add_argument("--interactive-clients", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=2, help="model replicas sharing the GPU")
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--graph-variant", default="auto", help="auto (causal GPU graph), fused, cpu (past K/V)")
    parser.add_argument("--token-budget", type=int, help="GPU tokens per model call (unset: the default)")
    parser.add_argument("--max-rows", type=int, help="rows per model call (unset: the default)")
    parser.add_argument(
        "--variants",
        default="default",
        help="settings to compare, one endpoint each: 'default;token_budget=16384,max_rows=64;gateways=2;"
        "call_target_s=0.03;graph_variant=fused' (keys: " + ", ".join(SETTINGS) + ")",
    )
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, small counts: check the script")
    args = parser.parse_args()
    variants = parse_variants(args.variants)
    found = device_or_none("bench/gpu/serving.py", args.smoke)
    if found is None:
        return
    device, which = found
    if args.smoke:  # one replica: the script is checked, nothing measured
        args.bulk, args.interactive, args.replicas = 2, 6, 1
    bulk_sizes = (20, 40) if args.smoke else (200, 1000)
    _, export, _ = bench_models(args.smoke)
    side_by_side = []
    for settings in variants:
        label = ", ".join(f"{k}={v}" for k, v in settings.items()) or "default"
        rows, usage, total = measure(args, settings, export, device, bulk_sizes)
        run = {**vars(args), **settings}
        print_table(
            f"rerank serve ({label}): {run['replicas']} model replicas on one GPU ({which}), {run['gateways']} "
            f"gateway(s), graph {run['graph_variant']}; host {cpu_description()}",
            ["phase", "requests", "clients", "answered", "pairs/s", "p50 s", "p95 s", "p99 s", "errors"],
            rows,
        )
        side_by_side.append(
            [
                label,
                total,
                rows[0][6],
                rows[1][6],
                rows[1][6] / rows[0][6],
                rows[2][6],
                f"{100 * usage.gpu_busy_share:.0f}%",
                usage.peak_memory_mib or "-",
                f"{usage.host_cores_busy:.1f} of {os.cpu_count()}",
                sum(r[8] for r in rows),
            ]
        )
    print_table(
        f"rerank serve, variants side by side — {which}",
        ["variant", "mixed pairs/s", "interactive p95 alone", "mixed", "interactive p95 mixed / alone"]
        + ["bulk p95", "GPU busy", "peak GPU MiB", "host CPUs busy", "errors"],
        side_by_side,
    )


if __name__ == "__main__":
    main()
