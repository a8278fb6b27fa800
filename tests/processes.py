"""This machine's processes as tests see them: a process's descendants, and the Ray actors among them (by PID, never
by name alone: other Ray clusters may run beside the session's)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, …), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def ray_actors(title: str, under: int) -> list[int]:
    """The Ray actor processes titled `ray::<title>…` (Ray names its workers so) below process `under`."""
    found = []
    for pid in descendants(under):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(f"ray::{title}".encode()):
                found.append(pid)
    return found
