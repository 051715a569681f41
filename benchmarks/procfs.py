"""What Linux's /proc tells the benchmark and the server tests: the TCP sockets on a port (so a load test
starts when every service worker listens) and the CPU time of a process tree, split into event loops
and other threads."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"  # states as /proc/net/tcp writes them
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def tcp_sockets(port: int) -> list[tuple[str, str]]:
    """(state, inode) of every TCP socket whose local port is ``port`` (IPv4 and IPv6)."""
    sockets = []
    for table in TCP_TABLES:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.append((fields[3], fields[9]))
    return sockets


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on ``port``: one per service worker that is serving."""
    return sum(state == TCP_LISTEN for state, _ in tcp_sockets(port))


def wait_for_workers(port: int, workers: int, timeout: float = 60) -> None:
    """/readyz answers from whichever worker is up first; a load test starts when all of them listen."""
    deadline = time.monotonic() + timeout
    while listening_sockets(port) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {listening_sockets(port)} of {workers} workers listen on port {port}")
        time.sleep(0.1)


def thread_cpu_seconds(root_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the process tree under ``root_pid``, split into the processes' main
    threads (the event loops) and their other threads (inference)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"event_loop": 0.0, "other_threads": 0.0}
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            pending += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            for task in Path(f"/proc/{pid}/task").iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
                totals["event_loop" if task.name == str(pid) else "other_threads"] += seconds
    return totals
