"""Keep one line Ray logs as an error, though nothing failed, off the offline job's stderr; pass every other byte."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Ray Data hands each actor its constructor through the object store and lets actors restart, and Ray's core worker
# logs an `E` line for that pairing on every actor it starts (ray-project/ray#53727, #57733). Here it warns of
# nothing: the driver puts those arguments and holds them, on its own node, while the job runs, so losing a worker
# node does not lose them.
ACTOR_ARGUMENT_NOTICE = b"has constructor arguments in the object store and max_restarts > 0"
DRAIN_SECONDS = 5.0


def _forward(source: int, sink: int, dropped: bytes) -> None:
    """Copy `source` to `sink` line by line until EOF, leaving out the lines that contain `dropped`; close both."""
    pending = b""
    while chunk := os.read(source, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if dropped not in line)
        if kept:
            os.write(sink, kept)
    if pending and dropped not in pending:
        os.write(sink, pending)
    os.close(source)
    os.close(sink)


@contextmanager
def without_actor_argument_notice() -> Iterator[None]:
    """While the block runs, this process's stderr (file descriptor 2, where Ray's C++ core logs) loses that line."""
    sys.stderr.flush()
    saved, stderr = os.dup(2), os.dup(2)  # one to restore, one the forwarder writes to and closes
    source, sink = os.pipe()
    os.dup2(sink, 2)
    os.close(sink)
    forwarder = threading.Thread(target=_forward, args=(source, stderr, ACTOR_ARGUMENT_NOTICE), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the forwarder drains what is left and stops
        forwarder.join(DRAIN_SECONDS)
        os.close(saved)
