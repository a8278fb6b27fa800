"""Session fixtures: the tiny model (packaged and freshly built), the official transformers recipe, local Ray."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rerank_core import Reranker
from rerank_core.cache_dir import CACHE_ENV
from rerank_core.tiny_model import TINY_MODEL

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach for the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One folder for the run, shared by its pytest-xdist workers, which inherit the environment of the process that made
# it (`make test` runs two): what the session builds (the tiny checkpoint, its export, the built-in VL model) is
# built there once, whichever worker asks first. Files derived at load (exports of built-in models, OpenVINO graphs)
# go to its cache, not the user's; tests of the export cache name their own.
_RUN_ENV = "QWEN_RERANK_TEST_RUN"
_MADE_HERE = _RUN_ENV not in os.environ
if _MADE_HERE:
    os.environ[_RUN_ENV] = tempfile.mkdtemp(prefix="qwen-rerank-test-")
RUN_DIR = Path(os.environ[_RUN_ENV])
os.environ[CACHE_ENV] = str(RUN_DIR / "cache")


def pytest_sessionfinish(session, exitstatus):
    """The process that made the run's folder (xdist's controller, which ends last) removes it."""
    if _MADE_HERE:
        shutil.rmtree(RUN_DIR, ignore_errors=True)


def built_once(name: str, build: Callable[[Path], object]) -> Path:
    """The run's folder `name`, made by `build(folder)` once across the run's processes (rerank_core's cache lock)."""
    from rerank_core.cache_dir import build_once

    def staged(final: Path) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        build(staging / name)
        (staging / name / ".built").touch()
        (staging / name).rename(final)
        staging.rmdir()

    final = RUN_DIR / "built" / name
    build_once(final, ".built", staged)
    return final


SESSION_RAY, CLUSTER = "session-ray", "cluster"
# The longest groups, which two xdist workers start first so that neither ends with one alone (measured: ~430, ~170
# and ~80 s on a 2-core machine).
LONGEST = (SESSION_RAY, CLUSTER, "tests/test_gpu_run.py")
_GROUPS = RUN_DIR / "groups.json"


def _group(item) -> str:
    """The item's group, which one xdist worker runs whole: the tests on the session's Ray (one worker starts it),
    the cluster tests (one head), else its module (its module fixtures built once)."""
    if "ray_cluster" in item.fixturenames:
        return SESSION_RAY
    return CLUSTER if item.nodeid.startswith("tests/cluster/") else item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    """In one process the session's Ray tests run last, so the Ray they start does not idle beside the rest; an
    xdist worker writes each test's group for the scheduler below and puts the LONGEST groups first."""
    groups = {item.nodeid: _group(item) for item in items}
    if hasattr(config, "workerinput"):
        staging = _GROUPS.with_name(f".groups-{config.workerinput['workerid']}.json")
        staging.write_text(json.dumps(groups))
        staging.replace(_GROUPS)  # both workers collect the same tests
        rank = {group: i - len(LONGEST) for i, group in enumerate(LONGEST)}
    else:
        rank = {SESSION_RAY: 1}
    items.sort(key=lambda item: rank.get(groups[item.nodeid], 0))


if importlib.util.find_spec("xdist"):

    def pytest_xdist_make_scheduler(config, log):
        """xdist's workers take whole groups (`_group`), in the order the workers collected them."""
        from xdist.scheduler import LoadScopeScheduling

        class GroupScheduling(LoadScopeScheduling):
            @functools.cached_property
            def groups(self) -> dict[str, str]:
                """Read once asked, after the workers have collected (and written it)."""
                return json.loads(_GROUPS.read_text())

            def _split_scope(self, nodeid: str) -> str:
                return self.groups[nodeid]

        config.option.loadscopereorder = False
        return GroupScheduling(config, log)


@pytest.fixture(scope="session")
def tiny_reranker() -> Reranker:
    """The tiny model shipped in the package (no torch needed)."""
    return Reranker.from_pretrained(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """A freshly built random Hugging Face Qwen3 checkpoint (needs torch)."""
    pytest.importorskip("torch")
    from rerank_core.tiny_model import build_checkpoint

    return built_once("tiny-ckpt", build_checkpoint)


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint) -> Path:
    """The checkpoint exported by our exporter, f32, int8 and f16, plus the f32 and f16 GPU graphs of every layout."""
    from rerank_core.export import export_checkpoint

    def export(out: Path) -> None:
        export_checkpoint(
            tiny_checkpoint,
            out,
            dtypes=["f32", "int8", "f16"],
            cuda_dtypes=["f32", "f16"],
            fused_dtypes=["f32", "f16"],
            paged_dtypes=["f32", "f16"],
        )

    return built_once("tiny", export)


@pytest.fixture(scope="session")
def tiny_vl_checkpoint() -> Path:
    """The built-in tiny random Qwen3-VL checkpoint in the Hub's layout, made in the session's cache (needs torch)."""
    pytest.importorskip("torch")
    from rerank_core.tiny_vl_model import tiny_vl_checkpoint

    return tiny_vl_checkpoint()


@pytest.fixture(scope="session")
def tiny_vl_reranker(tiny_vl_checkpoint) -> Reranker:
    """`builtin:tiny-qwen3-vl-reranker` as a user loads it: exported once into the session's export cache."""
    return Reranker.from_pretrained("builtin:tiny-qwen3-vl-reranker")


@pytest.fixture(scope="session")
def tiny_vl_export_all(tiny_vl_checkpoint) -> Path:
    """`rerank export builtin:tiny-qwen3-vl-reranker --dtype f32,int8,f16`'s folder, made once per run."""
    from rerank_core.cli import main

    def export(out: Path) -> None:
        assert main(["export", "builtin:tiny-qwen3-vl-reranker", "--out", str(out), "--dtype", "f32,int8,f16"]) == 0

    return built_once("tiny-vl-all", export)


@pytest.fixture(scope="session")
def official_vl(tiny_vl_checkpoint):
    """The official Qwen3-VL-Reranker recipe on that checkpoint (tests/oracle_vl.py)."""
    from tests.oracle_vl import OfficialVLRecipe

    return OfficialVLRecipe(tiny_vl_checkpoint)


@pytest.fixture(scope="session")
def official(tiny_checkpoint):
    """The official Qwen3-Reranker transformers recipe on the same checkpoint, as a scoring function."""
    from tests.oracle import OfficialRecipe

    return OfficialRecipe(tiny_checkpoint).score


@pytest.fixture(scope="session")
def mixed_pairs() -> list[tuple[str, str]]:
    """Pairs of very different lengths, unicode included, over several queries."""
    rng = np.random.default_rng(7)
    words = "cat dog machine learning data pizza coffee python garden movie weather Paris café 日本語 🙂".split()
    queries = ["What is machine learning?", "How to make coffee?", "Où est Paris ?"]
    pairs = []
    for i in range(18):
        n = int(rng.integers(1, 120))
        doc = " ".join(rng.choice(words, size=n))
        pairs.append((queries[i % 3], doc))
    return pairs


REPO = Path(__file__).resolve().parents[1]


def bf16_tolerance() -> float:
    """How far dtype bf16 may score from f32 here: bf16's rounding where the CPU runs bf16, none where it falls back."""
    from rerank_core.backends.onnx.openvino_session import cpu_runs_bf16

    return 3e-2 if cpu_runs_bf16() else 1e-5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


METRICS_PORT = free_port()


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session; num_gpus=1 is declared so the GPU request path can be exercised."""
    ray = pytest.importorskip("ray")
    from serve.body_limit import guard_the_proxy

    # The Serve proxy refuses bodies past 1 MiB and holds 8 MiB of them at once; the demo app (64 KiB) in its replica.
    guard_the_proxy(1 << 20, 8 << 20)
    ray.init(
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
        _metrics_export_port=METRICS_PORT,
        _system_config={"metrics_report_interval_ms": 1000},  # metrics reach Prometheus in 1 s, not 10 (test_metrics)
    )
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def session_app_args(config: dict) -> dict:
    """The demo app's args with the session's tight limits, so limit cases stay small."""
    args = dict(config["applications"][0]["args"], max_documents=64, max_body_bytes=65536, max_tokens_per_request=4096)
    args["model"] = dict(args["model"], max_length=512)
    return args


@pytest.fixture(scope="session")
def serve_url(ray_cluster) -> str:
    """The demo Serve config deployed on loopback, shared by the serve and integration tests."""
    from serve.launcher import deploy, load_serve_config

    config = load_serve_config(REPO / "configs/demo/serve.yaml")
    config["applications"][0]["args"] = session_app_args(config)
    return deploy(config, host="127.0.0.1", port=free_port())


@pytest.fixture(scope="session")
def fake_dashscope_server():
    """One fake DashScope service for the session."""
    from tests.fake_dashscope import FakeDashScope

    with FakeDashScope() as server:
        yield server


@pytest.fixture
def fake_dashscope(fake_dashscope_server):
    """The fake DashScope service, reset for each test."""
    fake_dashscope_server.reset()
    yield fake_dashscope_server
    fake_dashscope_server.reset()
