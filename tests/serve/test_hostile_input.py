"""Hostile input against every route: ≥ 500 generated bodies → no 5xx, no replica crash, 4xx name the field."""

import json
import random
import re

import httpx
import pytest

from serve.routes import DASHSCOPE_ROUTE

pytestmark = pytest.mark.slow
ROUTES = ["/v1/rerank", "/v2/rerank", DASHSCOPE_ROUTE]
FIELD_PREFIX = re.compile(r"^[A-Za-z_][\w.\[\]-]*: ")


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(12)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**80), 10**30])
    if kind == 3:
        return rng.choice([0.0, -1.5, 1e308, float("1e-300")])
    if kind == 4:
        return ""
    if kind == 5:
        return "x" * rng.choice([1, 1000, 40000])
    if kind == 6:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 50)))
    if kind == 7 and depth < 3:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    if kind == 8 and depth < 3:
        return {rng.choice(["text", "a", "query", ""]): _random_value(rng, depth + 1)}
    if kind == 9:
        return ["doc"] * rng.choice([0, 1, 65, 100_000])
    if kind == 10:
        return [{"text": "d"}, "e", 3]
    return "a normal string"


def _bodies(route: str, rng: random.Random, n: int) -> list[bytes]:
    if route == DASHSCOPE_ROUTE:
        base = {"model": "m", "input": {"query": "q", "documents": ["a", "b"]}, "parameters": {"top_n": 1}}
        paths = [
            ("model",),
            ("input",),
            ("input", "query"),
            ("input", "documents"),
            ("parameters",),
            ("parameters", "top_n"),
            ("parameters", "return_documents"),
            ("parameters", "instruct"),
        ]
    else:
        base = {"query": "q", "documents": ["a", {"text": "b"}], "top_n": 1}
        paths = [("query",), ("documents",), ("top_n",), ("return_documents",), ("instruction",), ("model",)]
    raw = [
        b"",
        b"{",
        b"null",
        b"[]",
        b"42",
        b'"s"',
        b"\xff\xfe\xfa",
        b'{"query": "\xc3\x28"}',
        b"[" * 20000 + b"]" * 20000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"{}",
        json.dumps({k: None for k in base}).encode(),
    ]
    bodies = list(raw)
    while len(bodies) < n:
        body = json.loads(json.dumps(base))
        for _ in range(rng.randrange(1, 3)):
            path = rng.choice(paths)
            target = body
            for key in path[:-1]:
                target = target.setdefault(key, {}) if isinstance(target, dict) else {}
            if isinstance(target, dict):
                if rng.random() < 0.15:
                    target.pop(path[-1], None)
                else:
                    target[path[-1]] = _random_value(rng)
        bodies.append(json.dumps(body).encode())
    return bodies


def _replica_ids(ray_cluster):
    """Names of the live replica actors of the shared app (a replaced replica gets a new name)."""
    actors = ray_cluster.util.list_named_actors(all_namespaces=True)
    return {a["name"] for a in actors if "rerank#Reranker" in a["name"]}


def test_fuzzed_bodies_never_cause_a_5xx_or_a_crash(serve_url, ray_cluster):
    rng = random.Random(2026)
    before = _replica_ids(ray_cluster)
    assert before
    tried, statuses = 0, {}
    with httpx.Client(timeout=60) as http:
        for route in ROUTES:
            for body in _bodies(route, rng, 180):
                reply = http.post(serve_url + route, content=body, headers={"content-type": "application/json"})
                tried += 1
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
                assert reply.status_code < 500, (route, body[:200], reply.text[:300])
                if reply.status_code >= 400:
                    error = reply.json()
                    message = error["message"]
                    assert FIELD_PREFIX.match(message), (route, body[:200], message)
                    if route == DASHSCOPE_ROUTE:
                        assert error["code"] == "InvalidParameter" and error["request_id"]
                    else:
                        assert error["field"] and message.startswith(error["field"])
    print(f"fuzz: {tried} bodies, statuses {dict(sorted(statuses.items()))}")
    assert tried >= 500 and statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0
    assert httpx.get(serve_url + "/health", timeout=10).status_code == 200
    assert _replica_ids(ray_cluster) == before  # no replica died and was replaced
