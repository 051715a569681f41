"""Several uvicorn worker processes, each listening on its own SO_REUSEPORT socket.

uvicorn's own ``--workers`` shares one listening socket between the processes, and whichever
worker wakes first accepts every pending connection: a burst of keep-alive connections (a load
balancer's pool, a benchmark) can land on a single worker while the others idle. With one socket
per worker bound with SO_REUSEPORT, the kernel spreads new connections over the workers.

A worker tells the supervisor when it is serving. One that exits before that on its first start
(port taken, broken model files, bad settings) stops the whole service with uvicorn's start-up
failure code; one that crashes later is restarted, with a growing delay if it keeps failing.

Reloading the model folder without a restart (``POST /admin/reload``, SIGHUP): each worker has its own models,
so every worker must reload. The supervisor and each worker share a duplex pipe. A reload round asks every
serving worker, through its pipe, to reload (``("reload", round)``) and collects their answers
(``("reloaded", round, outcome)``), so the count it reports is of workers that did reload, not of messages sent.
SIGHUP to the supervisor starts a round (its outcome is logged); a worker that receives ``POST /admin/reload``
asks the supervisor for one (``("reload-all", round)``), is itself one of the workers asked, and answers the
request with every worker's outcome (``("round-done", round, outcomes)``). A worker that is starting (or
restarting) when a round begins is not asked: it reads the folder as it starts. One that dies or does not answer
within ``RELOAD_ROUND_SECONDS`` is counted as not reloaded. With one worker there is no supervisor: the process
reloads itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from service.config import Settings

log = logging.getLogger("service.workers")
APP = "service.app:app"
PR_SET_PDEATHSIG = 1
MAX_RESTART_DELAY = 30.0
RELOAD_ROUND_SECONDS = 120.0  # longest the supervisor waits for the workers' answers to a reload round


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


class SupervisorLink:
    """A worker's end of its pipe to the supervisor: it says when the worker serves, reloads the worker when the
    supervisor asks, and asks the supervisor for a reload of every worker. Used from the worker's event loop."""

    def __init__(self, connection: Connection):
        self._connection = connection
        self._rounds: dict[str, asyncio.Future] = {}  # reload rounds this worker asked for
        self._ids = itertools.count(1)
        self._reload: Callable[[], Awaitable[dict]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    def send(self, message: tuple) -> None:
        self._connection.send(message)  # a few hundred bytes: the pipe never blocks on them

    def attach(self, reload: Callable[[], Awaitable[dict]]) -> None:
        """Answer the supervisor's reload requests with ``reload()`` (the worker's outcome, a plain dict)."""
        self._reload, self._loop = reload, asyncio.get_running_loop()
        self._loop.add_reader(self._connection.fileno(), self._readable)

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._connection.fileno())
            self._loop = None
        for future in self._rounds.values():
            future.cancel()

    async def reload_all(self, timeout: float = RELOAD_ROUND_SECONDS + 10) -> list[dict]:
        """Every serving worker reloaded (this one too): their outcomes, as the supervisor collected them."""
        round_id = f"{os.getpid()}-{next(self._ids)}"
        future = self._rounds[round_id] = asyncio.get_running_loop().create_future()
        try:
            self.send(("reload-all", round_id))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._rounds.pop(round_id, None)

    def _readable(self) -> None:
        try:
            while self._connection.poll():
                self._receive(self._connection.recv())
        except (EOFError, OSError):  # the supervisor is gone; PR_SET_PDEATHSIG stops this worker
            self.detach()

    def _receive(self, message: tuple) -> None:
        kind, round_id, *rest = message
        if kind == "reload" and self._reload is not None:
            task = asyncio.ensure_future(self._answer(round_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "round-done":
            future = self._rounds.get(round_id)
            if future is not None and not future.done():
                future.set_result(rest[0])

    async def _answer(self, round_id: str) -> None:
        try:
            outcome = await self._reload()
        except Exception as error:  # reported as a worker that did not reload
            log.exception("reload failed")
            outcome = {"pid": os.getpid(), "reloaded": False, "error": f"{type(error).__name__}: {error}"}
        with contextlib.suppress(OSError):
            self.send(("reloaded", round_id, outcome))


_link: SupervisorLink | None = None


def supervisor_link() -> SupervisorLink | None:
    """This worker's link to the supervisor; None outside a supervised worker (one worker, or plain uvicorn)."""
    return _link


class _ReportingServer(uvicorn.Server):
    """A uvicorn server that tells the supervisor once it is serving."""

    def __init__(self, config: uvicorn.Config, link: SupervisorLink):
        super().__init__(config)
        self._link = link

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            self._link.send(("serving", None))


def _worker(settings: Settings, connection: Connection) -> None:
    global _link
    if sys.platform == "linux":  # a worker must not outlive its supervisor (kill -9, OOM killer)
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # SIGHUP reloads the models once the app is up (service/app.py); until then it must not end the worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _link = SupervisorLink(connection)
    try:
        sock = reuse_port_socket(settings.host, settings.port)
    except OSError as error:
        print(f"error: cannot listen on {settings.host}:{settings.port}: {error}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches every process of the group
        _ReportingServer(uvicorn_config(settings), _link).run(sockets=[sock])


@dataclass
class _Slot:
    number: int
    process: multiprocessing.Process
    pipe: Connection  # duplex, to the worker's SupervisorLink
    serving: bool = False
    ever_served: bool = False
    failures: int = 0  # consecutive restarts that did not reach serving
    restart_at: float = 0.0


@dataclass
class _Round:
    """A reload of every worker: asked by a worker (``asker``) or by SIGHUP (None)."""

    id: str
    asker: _Slot | None
    deadline: float
    pending: dict[int, int] = field(default_factory=dict)  # slot number -> pid of the worker asked
    outcomes: list[dict] = field(default_factory=list)

    def close(self, workers: int) -> list[dict]:
        """Every worker's outcome: the answers, then the workers that did not answer or were not asked."""
        answered = {outcome.get("pid") for outcome in self.outcomes}
        missing = [{"pid": pid, "reloaded": False, "error": "did not answer within the reload round (died or "
                    f"took longer than {RELOAD_ROUND_SECONDS:.0f} s)"} for pid in self.pending.values()
                   if pid not in answered]
        starting = [{"pid": None, "reloaded": False, "error": "starting: it reads the model folder as it starts"}
                    for _ in range(workers - len(self.outcomes) - len(missing))]
        return self.outcomes + missing + starting


def run(settings: Settings) -> int:
    """Serve with ``settings.workers`` processes until SIGTERM or SIGINT; the exit code."""
    if settings.workers == 1:
        # SIGHUP reloads the models once the app is up (service/app.py); until then it must not stop the server.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(uvicorn_config(settings)).run()
        return 0
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = multiprocessing.get_context("spawn")
    stopping = False
    hangups = 0  # SIGHUPs not yet turned into reload rounds

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True  # only a flag: a signal handler must not take locks

    def hang_up(*_) -> None:
        nonlocal hangups
        hangups += 1

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hang_up)

    def start(number: int, slot: _Slot | None = None) -> _Slot:
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(target=_worker, args=(settings, theirs), name=f"sentiment-worker-{number}")
        process.start()
        theirs.close()
        log.info("worker %d started (pid %d)", number, process.pid)
        if slot is None:
            return _Slot(number, process, ours)
        slot.pipe.close()  # the dead worker's end
        slot.process, slot.pipe, slot.serving = process, ours, False
        return slot

    rounds: dict[str, _Round] = {}
    round_ids = itertools.count(1)

    def send(slot: _Slot, message: tuple) -> bool:
        try:
            slot.pipe.send(message)
        except OSError:  # the worker is gone; its sentinel tells the loop
            return False
        return True

    def begin_round(round_id: str, asker: _Slot | None) -> None:
        reload_round = rounds[round_id] = _Round(round_id, asker, time.monotonic() + RELOAD_ROUND_SECONDS)
        for slot in slots:
            if slot.serving and slot.process.is_alive() and send(slot, ("reload", round_id)):
                reload_round.pending[slot.number] = slot.process.pid
        log.info("reload round %s: asked %d of %d workers", round_id, len(reload_round.pending), len(slots))
        finish_if_done(reload_round)

    def finish_if_done(reload_round: _Round, timed_out: bool = False) -> None:
        answered = {outcome.get("pid") for outcome in reload_round.outcomes}
        waiting = [number for number, pid in reload_round.pending.items()
                   if pid not in answered and slots[number].process.pid == pid and slots[number].process.is_alive()]
        if waiting and not timed_out:
            return
        del rounds[reload_round.id]
        outcomes = reload_round.close(len(slots))
        reloaded = sum(bool(outcome.get("reloaded")) for outcome in outcomes)
        log.log(logging.INFO if reloaded == len(slots) else logging.ERROR, "reload round %s: %d of %d workers "
                "reloaded%s", reload_round.id, reloaded, len(slots),
                "" if reloaded == len(slots) else f": {[o for o in outcomes if not o.get('reloaded')]}")
        if reload_round.asker is not None:
            send(reload_round.asker, ("round-done", reload_round.id, outcomes))

    def receive(slot: _Slot) -> None:
        with contextlib.suppress(EOFError, OSError):
            while slot.pipe.poll():
                kind, round_id, *rest = slot.pipe.recv()
                if kind == "serving":
                    slot.serving = slot.ever_served = True
                    slot.failures = 0
                elif kind == "reload-all":
                    begin_round(round_id, slot)
                elif kind == "reloaded" and round_id in rounds:
                    rounds[round_id].outcomes.append(rest[0])
                    finish_if_done(rounds[round_id])

    slots: list[_Slot] = []
    exit_code = 0
    try:
        slots = [start(number) for number in range(settings.workers)]
        while not stopping:
            alive = [s for s in slots if s.process.is_alive()]
            wait([s.process.sentinel for s in alive] + [s.pipe for s in alive], timeout=0.5)
            for slot in slots:  # a worker that died may have said it was serving first
                receive(slot)
            if hangups:
                hangups = 0
                begin_round(f"sighup-{next(round_ids)}", None)
            for reload_round in list(rounds.values()):  # a worker that died or never answers
                finish_if_done(reload_round, timed_out=time.monotonic() >= reload_round.deadline)
            for slot in slots:
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
