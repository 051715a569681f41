"""Several uvicorn worker processes, each listening on its own SO_REUSEPORT socket.

uvicorn's own ``--workers`` shares one listening socket between the processes, and whichever
worker wakes first accepts every pending connection: a burst of keep-alive connections (a load
balancer's pool, a benchmark) can land on a single worker while the others idle. With one socket
per worker bound with SO_REUSEPORT, the kernel spreads new connections over the workers.

A worker tells the supervisor when it is serving. One that exits before that on its first start
(port taken, broken model files, bad settings) stops the whole service with uvicorn's start-up
failure code; one that crashes later is restarted, with a growing delay if it keeps failing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from service.config import Settings

log = logging.getLogger("service.workers")
APP = "service.app:app"
PR_SET_PDEATHSIG = 1
MAX_RESTART_DELAY = 30.0


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(APP, host=settings.host, port=settings.port, log_level=settings.log_level,
                          access_log=False, timeout_graceful_shutdown=settings.graceful_shutdown_seconds)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """Bound, not yet listening: uvicorn listens once the app's start-up has finished, so the kernel
    sends no connection to a worker that is still loading its models. The address family follows
    uvicorn's own rule."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _ReportingServer(uvicorn.Server):
    """A uvicorn server that tells the supervisor once it is serving."""

    def __init__(self, config: uvicorn.Config, ready: Connection):
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready.send(True)


def _worker(settings: Settings, ready: Connection) -> None:
    if sys.platform == "linux":  # a worker must not outlive its supervisor (kill -9, OOM killer)
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    try:
        sock = reuse_port_socket(settings.host, settings.port)
    except OSError as error:
        print(f"error: cannot listen on {settings.host}:{settings.port}: {error}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches every process of the group
        _ReportingServer(uvicorn_config(settings), ready).run(sockets=[sock])


@dataclass
class _Slot:
    number: int
    process: multiprocessing.Process
    ready: Connection
    serving: bool = False
    ever_served: bool = False
    failures: int = 0  # consecutive restarts that did not reach serving
    restart_at: float = 0.0


def run(settings: Settings) -> int:
    """Serve with ``settings.workers`` processes until SIGTERM or SIGINT; the exit code."""
    if settings.workers == 1:
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(uvicorn_config(settings)).run()
        return 0
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True  # only a flag: a signal handler must not take locks

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(number: int, slot: _Slot | None = None) -> _Slot:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(settings, sender), name=f"sentiment-worker-{number}")
        process.start()
        sender.close()
        log.info("worker %d started (pid %d)", number, process.pid)
        if slot is None:
            return _Slot(number, process, receiver)
        slot.ready.close()  # the dead worker's end
        slot.process, slot.ready, slot.serving = process, receiver, False
        return slot

    slots: list[_Slot] = []
    exit_code = 0
    try:
        slots = [start(number) for number in range(settings.workers)]
        while not stopping:
            alive = [s for s in slots if s.process.is_alive()]
            wait([s.process.sentinel for s in alive] + [s.ready for s in alive if not s.serving], timeout=0.5)
            for slot in slots:
                if not slot.serving and slot.ready.poll():
                    with contextlib.suppress(EOFError):
                        slot.ready.recv()
                        slot.serving = slot.ever_served = True
                        slot.failures = 0
                if slot.process.is_alive() or stopping:
                    continue
                if not slot.ever_served:
                    log.error("worker %d could not start (exit code %s); stopping the service", slot.number,
                              slot.process.exitcode)
                    exit_code = STARTUP_FAILURE
                    stopping = True
                    break
                if slot.restart_at == 0.0:
                    slot.failures += not slot.serving
                    delay = min(MAX_RESTART_DELAY, 2.0 ** slot.failures - 1)
                    slot.restart_at = time.monotonic() + delay
                    log.error("worker %d (pid %d) exited with code %s; restarting it in %.0f s", slot.number,
                              slot.process.pid, slot.process.exitcode, delay)
                if time.monotonic() >= slot.restart_at:
                    slot.restart_at = 0.0
                    start(slot.number, slot)
    finally:
        for slot in slots:
            if slot.process.is_alive():
                slot.process.terminate()  # SIGTERM: uvicorn finishes in-flight requests first
        deadline = time.monotonic() + settings.graceful_shutdown_seconds + 5
        for slot in slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
    return exit_code
