"""The offline job on real Ray Data and real Parquet: exact scores, both layouts, bad rows kept, config errors."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import OfflineConfig
from pipelines.offline import load_config, run_job
from rerank_core import ConfigError
from rerank_core.tiny_model import TINY_MODEL
from tests.conftest import bf16_tolerance

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]
MODEL = {"model": TINY_MODEL, "device": "cpu"}
# One actor where a test checks what a job writes; two where rows must spread over actors (the pairs layout, the
# streaming plan): each actor is a process of its own to start.
COMPUTE = {"concurrency": 1, "num_cpus": 0.5, "batch_size": 16}
TWO_ACTORS = {**COMPUTE, "concurrency": 2}


def job(tmp_path, table, **overrides):
    pq.write_table(table, tmp_path / "in.parquet")
    cfg = OfflineConfig.from_dict(
        {
            "model": MODEL,
            "input": str(tmp_path / "in.parquet"),
            "output": str(tmp_path / "out"),
            "compute": COMPUTE,
            **overrides,
        }
    )
    summary = run_job(cfg)
    return summary, pq.read_table(tmp_path / "out")


def by_id(table):
    return {row["id"]: row for row in table.to_pylist()}


def all_to_all_operators(dataset) -> list[str]:
    """Names of the all-to-all operators (barriers that hold the whole input) in a dataset's plan (private Ray API)."""
    from ray.data._internal.logical.operators.all_to_all_operator import AbstractAllToAll

    found, stack = [], [dataset._logical_plan.dag]
    while stack:
        op = stack.pop()
        if isinstance(op, AbstractAllToAll):
            found.append(op.name)
        stack.extend(op.input_dependencies)
    return found


def test_pairs_layout_scores_every_row_exactly_and_keeps_bad_ones(tmp_path, tiny_reranker, mixed_pairs):
    """Every row out once with every column, scored as the library scores it (with its row's instruction, from a
    column the config names, where it has one), bad rows flagged; one small input gives one output file."""
    long_doc = "machine learning data " * 4000
    queries = [q for q, _ in mixed_pairs] + ["q", "q", None, "", "日本語の質問", "q"]
    docs = [d for _, d in mixed_pairs] + [None, "", "d", "d", "café 🙂 ünïcödé", long_doc]
    n = len(queries)
    instructions = [("Find code", "Find recipes", None)[i % 3] for i in range(n)]
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "query": queries,
            "document": docs,
            "extra": list(range(n)),
            "instr": instructions,
        }
    )
    summary, out = job(tmp_path, table, columns={"instruction": "instr"}, compute=TWO_ACTORS)
    assert out.num_rows == n == summary.rows and summary.failed_rows == 4
    rows = by_id(out)
    assert sorted(rows) == sorted(table.column("id").to_pylist())  # every id exactly once
    good = [i for i in range(n) if queries[i] and docs[i]]
    for i in good:
        row = rows[f"r{i}"]
        expected = tiny_reranker.score_pairs([(queries[i], docs[i])], instructions[i])[0]
        assert row["extra"] == i and row["query"] == queries[i] and row["document"] == docs[i]
        assert row["error"] is None and abs(row["score"] - expected) <= 1e-5
    for i in set(range(n)) - set(good):
        assert rows[f"r{i}"]["score"] is None and rows[f"r{i}"]["error"]
    assert "null" in rows[f"r{len(mixed_pairs)}"]["error"] and "empty" in rows[f"r{len(mixed_pairs) + 1}"]["error"]
    assert rows[f"r{n - 1}"]["truncated_tokens"] > 0 and rows[f"r{n - 2}"]["truncated_tokens"] == 0
    assert out.schema.field("score").type == pa.float32()
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 1  # its batches gathered: one file, not one a batch


def test_batches_over_the_device_memory_are_split_and_a_row_that_never_fits_is_flagged(tmp_path, tiny_reranker):
    """Actors with a capped arena (memory_limit_mib: real allocation failures, as a GPU out of memory gives): every
    row out exactly once, each that fits scored as uncapped, the one too big alone flagged DeviceMemoryError."""
    documents = [f"document {i}: " + "some words about things " * 40 for i in range(31)] + ["word " * 3000]
    n = len(documents)
    table = pa.table({"id": [f"r{i}" for i in range(n)], "query": ["what is it about?"] * n, "document": documents})
    model = {**MODEL, "memory_limit_mib": 64, "token_budget": 8192, "max_rows_per_call": 32}
    summary, out = job(tmp_path, table, model=model, compute={**COMPUTE, "batch_size": 32})
    rows = by_id(out)
    assert out.num_rows == n and sorted(rows) == sorted(table.column("id").to_pylist()) and summary.failed_rows == 1
    assert "DeviceMemoryError" in rows[f"r{n - 1}"]["error"] and rows[f"r{n - 1}"]["score"] is None
    expected = tiny_reranker.score_pairs([("what is it about?", d) for d in documents[:-1]])
    assert [rows[f"r{i}"]["score"] for i in range(n - 1)] == pytest.approx(expected.tolist(), abs=1e-5)


def test_non_string_document_column_fails_rows_not_the_job(tmp_path):
    table = pa.table({"id": ["a", "b"], "query": ["q", "q"], "document": [1, 2]})
    summary, out = job(tmp_path, table)
    assert summary.failed_rows == 2 and all("not a string" in e for e in out.column("error").to_pylist())


def test_dtype_bf16_job_scores_every_row(tmp_path, tiny_reranker, mixed_pairs):
    """bf16 where the CPU runs it, else f32 after one log line: either way each actor loads and scores every row."""
    table = pa.table(
        {
            "id": list(range(len(mixed_pairs))),
            "query": [q for q, _ in mixed_pairs],
            "document": [d for _, d in mixed_pairs],
        }
    )
    summary, out = job(tmp_path, table, model={**MODEL, "dtype": "bf16"})
    assert summary.rows == len(mixed_pairs) and summary.failed_rows == 0
    scores = [by_id(out)[i]["score"] for i in range(len(mixed_pairs))]
    np.testing.assert_allclose(scores, tiny_reranker.score_pairs(mixed_pairs), atol=bf16_tolerance())


def test_grouped_layout_scores_and_ranks_with_top_k(tmp_path, tiny_reranker):
    docs = [["coffee beans", "python code", "paris", "pizza"], ["a", "b", "c"], ["x", None], []]
    table = pa.table(
        {"id": ["g0", "g1", "g2", "g3"], "query": ["coffee?", "letters?", "q", "empty list"], "documents": docs}
    )
    summary, out = job(tmp_path, table, layout="grouped", top_k=2)
    rows = by_id(out)
    assert summary.rows == 4 and summary.failed_rows == 1
    for gid, q, d in (("g0", "coffee?", docs[0]), ("g1", "letters?", docs[1])):
        expected = tiny_reranker.score_pairs([(q, x) for x in d])
        np.testing.assert_allclose(rows[gid]["scores"], expected, atol=1e-5)
        assert rows[gid]["ranking"] == list(np.argsort(-expected, kind="stable")[:2])
    assert rows["g2"]["scores"] is None and "items [1]" in rows["g2"]["error"]
    assert rows["g3"]["scores"] == [] and rows["g3"]["ranking"] == [] and rows["g3"]["error"] is None


def test_gpu_request_path_runs_on_a_declared_gpu(tmp_path, tiny_reranker):
    """The session's Ray declares one GPU: an actor asking for it is scheduled; ONNX Runtime falls back to CPU."""
    table = pa.table({"id": ["a", "b"], "query": ["q", "q"], "document": ["x", "y"]})
    _, out = job(tmp_path, table, compute={"concurrency": 1, "num_cpus": 0.5, "num_gpus": 1})
    np.testing.assert_allclose(
        [by_id(out)[i]["score"] for i in "ab"], tiny_reranker.score_pairs([("q", "x"), ("q", "y")]), atol=1e-5
    )


def test_more_gpus_than_the_cluster_has_fails_clearly(tmp_path, ray_cluster):
    table = pa.table({"id": ["a"], "query": ["q"], "document": ["x"]})
    with pytest.raises(ConfigError, match="num_gpus=2.*1 GPUs"):
        job(tmp_path, table, compute={"concurrency": 1, "num_gpus": 2})


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.parquet").write_text("x")
    table = pa.table({"id": ["a"], "query": ["q"], "document": ["x"]})
    with pytest.raises(ConfigError, match="not empty.*mode: overwrite"):
        job(tmp_path, table)
    assert (tmp_path / "out" / "old.parquet").exists()


@pytest.mark.parametrize(
    "yaml_text,match",
    [
        ("model: {model: m}\ninput: a\noutput: b\ncompute: {concurency: 2}\n", r"compute\.concurency: Extra inputs"),
        ("model: {model: m}\ninput: a\noutput: b\nlayout: rows\n", r"layout: Input should be 'pairs' or 'grouped'"),
        ("model: {model: m}\noutput: b\n", r"input: Field required"),
        ("model: {model: m}\ninput: a\noutput: b\ncompute: {num_gpus: -1}\n", r"compute\.num_gpus"),
        ("model: [", "not valid YAML"),
    ],
)
def test_config_errors_name_the_key_path(tmp_path, yaml_text, match):
    path = tmp_path / "job.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(str(path))
    assert str(path) in str(info.value)


def test_cli_overrides_are_applied_and_validated(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model: {model: m}\ninput: a\noutput: b\n")
    cfg = load_config(str(path), model=TINY_MODEL, input_path="in", output_path="out")
    assert (cfg.model.model, cfg.input, cfg.output) == (TINY_MODEL, "in", "out")


def _resumable_config(tmp_path, out_name):
    return OfflineConfig.from_dict(
        {
            "model": MODEL,
            "input": str(tmp_path / "in.parquet"),
            "output": str(tmp_path / out_name),
            "resume": True,
            "compute": {"concurrency": 1, "num_cpus": 0.5, "batch_size": 16, "rows_per_part": 8},
        }
    )


def test_killed_resumable_job_finishes_with_every_row_exactly_once(tmp_path, ray_cluster, tiny_reranker):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    n = 1600  # 200 parts of 8 rows: the first run is killed long before the last part
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "query": [f"query {i % 7}" for i in range(n)],
            "document": [None if i % 101 == 5 else f"document number {i} " * (1 + i % 5) for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=100)
    killed_cfg = _resumable_config(tmp_path, "resumed")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(killed_cfg.model_dump(mode="json")))

    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rerank_core.cli", "offline", "--config", str(tmp_path / "job.yaml")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    out = tmp_path / "resumed"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(out.glob("part-*.parquet")))
    assert 3 <= done_before < 200, done_before  # killed mid-run, with some output committed

    summary = run_job(killed_cfg)  # the rerun skips committed parts
    assert summary.rows == n and summary.failed_rows == 16
    resumed = pq.read_table(out)
    assert resumed.num_rows == n and sorted(resumed.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    rows, source = by_id(resumed), table.to_pylist()
    good = [r for r in source if r["document"] is not None]
    want = tiny_reranker.scorer.score([(r["query"], r["document"]) for r in good])
    np.testing.assert_allclose([rows[r["id"]]["score"] for r in good], want, atol=1e-5)  # as a run never killed
    bad = [rows[r["id"]] for r in source if r["document"] is None]
    assert all(r["score"] is None and "null" in r["error"] for r in bad)
    assert all(rows[r["id"]]["error"] is None for r in good)
    assert len(json.loads((out / "_manifest.json").read_text())["parts"]) == 200
    assert not list(out.glob(".*.tmp"))


def test_resume_refuses_an_output_of_another_job(tmp_path):
    pq.write_table(pa.table({"id": ["a"], "query": ["q"], "document": ["d"]}), tmp_path / "in.parquet")
    run_job(_resumable_config(tmp_path, "out"))
    pq.write_table(pa.table({"id": ["a", "b"], "query": ["q", "q"], "document": ["d", "e"]}), tmp_path / "in.parquet")
    with pytest.raises(ConfigError, match="different job"):
        run_job(_resumable_config(tmp_path, "out"))


def test_offline_without_a_config_fits_a_machine_without_gpus(tmp_path):
    """`rerank offline --model --input --output`: no config, its own local Ray (no GPU), CPU actors, quietly."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    # RAY_AUTH_MODE unset, as on a newcomer's machine (this session's ray.init sets it): Ray's default applies.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}, "RAY_ADDRESS": "local"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rerank_core.cli",
            "offline",
            "--model",
            TINY_MODEL,
            "--input",
            str(REPO / "configs/demo/data/sample_pairs.parquet"),
            "--output",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CPU only, 2 ONNX Runtime threads" in proc.stderr and "num_cpus=1," in proc.stderr
    assert pq.read_table(tmp_path / "out").num_rows == 300
    # Quiet: not Ray's warning about its secure default, nor its error-looking line about actor arguments
    # (pipelines/quiet.py), nor Python warnings from the stack.
    noise = [
        "Token authentication",
        "core_worker",
        "max_restarts",
        "FutureWarning",
        "UserWarning",
        "DeprecationWarning",
    ]
    assert [n for n in noise if n in proc.stdout + proc.stderr] == [], proc.stderr[-3000:]


def test_offline_without_a_config_names_what_is_missing():
    with pytest.raises(ConfigError, match="needs --input, --output"):
        load_config(None, model=TINY_MODEL)


def test_the_job_streams_with_no_all_to_all_operator_between_read_and_score(tmp_path):
    """One small file (one block when read) still reaches every actor, re-blocked without a barrier (the job's
    written output: the pairs layout test)."""
    from pipelines.offline import actor_setup, streaming_plan

    n = 200
    pq.write_table(
        pa.table({"id": [f"r{i}" for i in range(n)], "query": ["q"] * n, "document": [f"doc {i}" for i in range(n)]}),
        tmp_path / "in.parquet",
    )
    cfg = OfflineConfig.from_dict(
        {"model": MODEL, "input": str(tmp_path / "in.parquet"), "output": str(tmp_path / "out"), "compute": TWO_ACTORS}
    )
    plan = streaming_plan(cfg, actor_setup(cfg))
    scored = plan.scored
    assert plan.rows == n and plan.reblocked and all_to_all_operators(scored) == []
    assert all_to_all_operators(scored.repartition(4)) == ["Repartition"]  # what the job used to do
    blocks = [len(b) for b in scored.iter_batches(batch_size=None, batch_format="pyarrow")]
    assert sum(blocks) == n and len(blocks) >= TWO_ACTORS["concurrency"] * 4 and max(blocks) <= COMPUTE["batch_size"]


def test_a_large_input_streams_in_bounded_blocks_without_any_re_blocking(tmp_path):
    """An input of many max_block_mib's worth is read in blocks of at most that size and not re-blocked at all."""
    from pipelines.offline import actor_setup, streaming_plan

    n, payload = 3000, 4096  # ~12 MiB: more than concurrency × blocks_per_actor blocks of 1 MiB
    pq.write_table(
        pa.table(
            {
                "id": list(range(n)),
                "query": ["q"] * n,
                "document": [f"doc {i}" for i in range(n)],
                "payload": [os.urandom(payload) for _ in range(n)],
            }
        ),
        tmp_path / "in.parquet",
    )
    cfg = OfflineConfig.from_dict(
        {
            "model": MODEL,
            "input": str(tmp_path / "in.parquet"),
            "output": str(tmp_path / "out"),
            "compute": {**TWO_ACTORS, "max_block_mib": 1},
        }
    )
    plan = streaming_plan(cfg, actor_setup(cfg))
    scored, rows = plan.scored, plan.rows
    operators, stack = [], [scored._logical_plan.dag]
    while stack:
        operators.append(stack[-1].name)
        stack.extend(stack.pop().input_dependencies)
    assert rows == n and not plan.reblocked and not [name for name in operators if "Repartition" in name], operators
    assert scored.context.target_max_block_size == 2**20
    ids = [i for batch in scored.iter_batches(batch_format="pyarrow") for i in batch.column("id").to_pylist()]
    assert sorted(ids) == list(range(n))


def test_long_documents_in_windows_in_both_layouts(tmp_path):
    from rerank_core import Reranker
    from tests.rerank_core.test_long_documents import LONG, QUERY

    model = {**MODEL, "max_length": 256, "long_documents": {"mode": "chunk"}}
    library = Reranker.from_pretrained(TINY_MODEL, max_length=256)
    docs = [LONG, "cats like fish", LONG[400:]]
    expected = library.scorer.score_detailed([(QUERY, d) for d in docs], long_documents="chunk")
    table = pa.table({"id": ["a", "b", "c"], "query": [QUERY] * 3, "document": docs})
    for name in ("pairs", "grouped"):
        (tmp_path / name).mkdir()
    _, out = job(tmp_path / "pairs", table, model=model)
    rows = by_id(out)
    for k, key in enumerate("abc"):
        assert rows[key]["score"] == pytest.approx(float(expected.scores[k]), abs=1e-5)
        assert (rows[key]["window_start"], rows[key]["window_end"]) == tuple(expected.windows[k])
    grouped = pa.table({"id": ["g"], "query": [QUERY], "documents": [docs]})
    _, out = job(tmp_path / "grouped", grouped, model=model, layout="grouped")
    row = out.to_pylist()[0]
    np.testing.assert_allclose(row["scores"], expected.scores, atol=1e-5)
    assert list(zip(row["window_starts"], row["window_ends"])) == [tuple(w) for w in expected.windows]
