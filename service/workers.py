"""Several uvicorn worker processes, each listening on its own SO_REUSEPORT socket.

uvicorn's own ``--workers`` shares one listening socket between the processes, and whichever
worker wakes first accepts every pending connection: a burst of keep-alive connections (a load
balancer's pool, a benchmark) can land on a single worker while the others idle. With one socket
per worker bound with SO_REUSEPORT, the kernel spreads new connections over the workers.

A worker that crashes is restarted; a worker that cannot start (port taken, broken model files)
stops the whole service with uvicorn's start-up failure code, instead of restarting in a loop.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from service.config import Settings

log = logging.getLogger("service.workers")
APP = "service.app:app"


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(APP, host=settings.host, port=settings.port, log_level=settings.log_level,
                          access_log=False, timeout_graceful_shutdown=settings.graceful_shutdown_seconds)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """Bound, not yet listening: uvicorn listens once the app's start-up has finished, so the kernel
    sends no connection to a worker that is still loading its models."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _worker(settings: Settings) -> None:
    try:
        sock = reuse_port_socket(settings.host, settings.port)
    except OSError as error:
        print(f"error: cannot listen on {settings.host}:{settings.port}: {error}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    uvicorn.Server(uvicorn_config(settings)).run(sockets=[sock])


def run(settings: Settings) -> int:
    """Serve with ``settings.workers`` processes until SIGTERM or SIGINT; the exit code."""
    if settings.workers == 1:
        uvicorn.Server(uvicorn_config(settings)).run()
        return 0
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    def start(slot: int) -> multiprocessing.Process:
        process = context.Process(target=_worker, args=(settings,), name=f"sentiment-worker-{slot}")
        process.start()
        log.info("worker %d started (pid %d)", slot, process.pid)
        return process

    workers = [start(slot) for slot in range(settings.workers)]
    exit_code = 0
    while not stopping.wait(0.5):
        for slot, process in enumerate(workers):
            if process.is_alive():
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %d could not start; stopping the service", slot)
                exit_code = STARTUP_FAILURE
                stopping.set()
                break
            log.error("worker %d (pid %d) exited with code %s; restarting it", slot, process.pid, process.exitcode)
            workers[slot] = start(slot)

    for process in workers:
        if process.is_alive():
            process.terminate()  # SIGTERM: uvicorn finishes in-flight requests first
    for process in workers:
        process.join(settings.graceful_shutdown_seconds + 5)
        if process.is_alive():
            process.kill()
    return exit_code

