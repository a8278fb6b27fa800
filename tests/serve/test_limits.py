"""Bounded memory under oversized uploads: chunked or mis-declared bodies are cut off as they arrive, at the proxy and
in the replica, whose memory stays flat while it keeps serving; and under many large uploads at once, which past the
proxy's buffer budget get 503 (retry) instead of its memory."""

import contextlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.processes import ray_actors

pytestmark = pytest.mark.slow
MIB = 1 << 20


def rss_mib(pid: int) -> float:
    """Resident memory of a process on this machine, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def actor_pid(title: str) -> int:
    """The process of a live actor of the session's Ray (whose processes this one started), titled `ray::<title>`."""
    found = ray_actors(title, under=os.getpid())
    assert len(found) == 1, (title, found)
    return found[0]


def upload(url: str, path: str, total: int, *, declared: int | None = None, chunk: int = 256 * 1024) -> tuple[str, int]:
    """POST up to `total` bytes (chunked, or after a Content-Length of `declared`) until the server answers or closes;
    returns the status line (or '' if none came) and how many bytes the server took before that."""
    parts = urlparse(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    framing = f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
    body = b'{"query": "q", "documents": ["' + b"x" * chunk
    sent = 0
    try:
        while sent < total:
            piece = body if sent == 0 else b"x" * chunk
            sock.sendall(piece if declared is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            sock.settimeout(0.0)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server has answered
            except BlockingIOError:
                pass
            finally:
                sock.settimeout(30)
        else:
            if declared is None:
                sock.sendall(b"0\r\n\r\n")  # the whole body went in: end it and wait for the answer
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        status = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    except (ConnectionResetError, TimeoutError):
        status = ""
    sock.close()
    return status, sent


def test_oversized_uploads_are_cut_off_and_memory_stays_flat(serve_url, ray_cluster):
    # The gateway replica reads the bodies (the model replica only gets parsed requests from it).
    replica, proxy = actor_pid("ServeReplica:rerank:Gateway"), actor_pid("ProxyActor")
    ok = {"query": "q", "documents": ["d"]}
    assert httpx.post(serve_url + "/v1/rerank", json=ok, timeout=60).status_code == 200  # warm
    before = rss_mib(replica), rss_mib(proxy)
    peaks = list(before)
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peaks[0], peaks[1] = max(peaks[0], rss_mib(replica)), max(peaks[1], rss_mib(proxy))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(6) as pool:
            chunked = list(pool.map(lambda _: upload(serve_url, "/v1/rerank", 256 * MIB), range(4)))
            # Between the replica's 64 KiB and the proxy's 1 MiB: refused by the replica as it arrives.
            medium = pool.submit(upload, serve_url, "/rerank", 768 * 1024).result()
            lying = pool.submit(upload, serve_url, "/score", 64 * MIB, declared=1000).result()
    finally:
        stop.set()
        watcher.join()
    elapsed = time.monotonic() - started
    after = rss_mib(replica), rss_mib(proxy)
    for status, sent in chunked:
        assert status.startswith("HTTP/1.1 413") and sent < 32 * MIB, (status, sent)  # not read to the end
    assert medium[0].startswith("HTTP/1.1 413")
    assert not lying[0].startswith("HTTP/1.1 2") and lying[1] < 32 * MIB  # the surplus is never taken in
    print(
        f"\ngateway RSS {before[0]:.0f} → peak {peaks[0]:.0f} → {after[0]:.0f} MiB; "
        f"proxy RSS {before[1]:.0f} → peak {peaks[1]:.0f} → {after[1]:.0f} MiB; "
        f"{len(chunked)}×256 MiB refused after {[s // 1024 for _, s in chunked]} KiB in {elapsed:.1f} s"
    )
    assert peaks[0] - before[0] < 64 and peaks[1] - before[1] < 64
    reply = httpx.post(serve_url + "/v1/rerank", json=ok, timeout=60)
    assert reply.status_code == 200 and actor_pid("ServeReplica:rerank:Gateway") == replica


def test_truncation_is_reported_on_every_answer(serve_url):
    reply = httpx.post(serve_url + "/v1/rerank", json={"query": "q", "documents": ["data " * 700, "short"]}, timeout=60)
    assert reply.status_code == 200 and reply.headers["x-truncated-documents"] == "1"


def hold_upload(url: str, path: str, declared: int, sent: int) -> socket.socket:
    """A POST that declares `declared` bytes, sends `sent` of them and keeps its connection open (a slow client)."""
    parts = urlparse(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):  # answered and closed early
        sock.sendall(head.encode() + b"x" * sent)
    return sock


def answer(sock: socket.socket, wait_s: float) -> str:
    """The status line the server has sent on `sock` within `wait_s` ('' if none)."""
    sock.settimeout(wait_s)
    try:
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()
    except (TimeoutError, ConnectionResetError):
        return ""


def test_uploads_past_the_proxy_buffer_budget_get_503_and_its_memory_stays_flat(serve_url):
    # The session's proxy takes bodies of ≤ 1 MiB and holds ≤ 8 MiB of them at once (tests/conftest.py).
    proxy, ok = actor_pid("ProxyActor"), {"query": "q", "documents": ["d"]}
    assert httpx.post(serve_url + "/v1/rerank", json=ok, timeout=60).status_code == 200
    before = peak = rss_mib(proxy)
    with ThreadPoolExecutor(48) as pool:  # 48 slow clients, each 1 byte short of its declared 1 MiB
        slow = list(pool.map(lambda _: hold_upload(serve_url, "/v1/rerank", MIB, MIB - 1), range(48)))
    try:
        statuses = [answer(sock, 2) for sock in slow]
        peak = max(peak, rss_mib(proxy))
        refused = [s for s in statuses if s.startswith("HTTP/1.1 503")]
        assert len(refused) == 40 and statuses.count("") == 8, statuses  # 8 MiB held, the rest refused at once
        reply = httpx.post(serve_url + "/v1/rerank", json=ok, timeout=60)
        assert reply.status_code == 503 and reply.headers["retry-after"] == "1", reply.text
        assert "max_buffered_body_bytes=8388608" in reply.json()["message"]
        dashscope = httpx.post(serve_url + "/api/v1/services/rerank/text-rerank/text-rerank", json={}, timeout=60)
        assert dashscope.status_code == 503 and "max_buffered_body_bytes" in dashscope.json()["message"]
        status, sent = upload(serve_url, "/v1/rerank", 64 * MIB)  # a chunked body: refused at its first bytes
        assert status.startswith("HTTP/1.1 503") and sent < 16 * MIB, (status, sent)
        peak = max(peak, rss_mib(proxy))
    finally:
        for sock in slow:
            sock.close()
    print(f"\nproxy RSS {before:.0f} → peak {peak:.0f} MiB with 48 slow 1 MiB uploads, 8 MiB budget")
    assert peak - before < 32  # 48 MiB of bodies were on their way
    deadline = time.monotonic() + 30
    while (reply := httpx.post(serve_url + "/v1/rerank", json=ok, timeout=60)).status_code == 503:
        assert time.monotonic() < deadline, "the budget was not freed when the slow clients left"
        time.sleep(0.1)
    assert reply.status_code == 200
