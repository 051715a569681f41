"""Reloading the model folder without a restart: ``POST /admin/reload``, SIGHUP and, when asked for, polling.

Every way in re-reads ``SENTIMENT_MODEL_DIR`` through ``ScoringCore.reload``: new models appear, a replaced one
is swapped in at once (requests in flight finish on the old session, its batcher drains), a removed one goes
away, and a folder that a start-up would refuse (a broken file, without SENTIMENT_SKIP_BROKEN_MODELS) leaves the
served set as it was, with the reasons in the answer and in /readyz's ``failed``.

* ``POST /admin/reload`` (API keys apply; ``SENTIMENT_ADMIN_RELOAD=false`` leaves it out: 404) reloads every
  worker of ``python -m service`` and answers once they have: with one worker, this process; with several, the
  supervisor asks each serving worker and collects their outcomes (``service/workers.py``), so ``workers_reloaded``
  counts workers that did reload. 200 when every worker reloaded; 409 (``reload_refused``) when the folder was
  refused; 503 (``reload_incomplete``, with Retry-After) when a worker did not answer or was starting.
* SIGHUP to the ``python -m service`` process: with several workers the supervisor runs the same round (the
  outcome goes to its log); a worker (or the one process) that receives SIGHUP itself reloads itself.
* ``SENTIMENT_RELOAD_POLL_SECONDS``: each process checks the folder's file signatures (names, sizes, times) that
  often, and reloads itself once a change has settled (the same signatures at two checks in a row).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service import workers
from service.errors import problem
from service.repository import FOLDER, folder_signature
from service.schemas import ErrorDetail, ErrorResponse
from service.scoring import SHUTTING_DOWN

log = logging.getLogger("service.reload")

router = APIRouter(prefix="/admin", tags=["admin"])


class WorkerOutcome(BaseModel):
    pid: int | None = Field(description="The worker's process id; null for a worker that was starting.")
    reloaded: bool = Field(description="It re-read the model folder and serves what the folder holds now.")
    models: dict[str, str] = Field(default_factory=dict, description="What it serves now: name -> version.")
    failed: dict[str, str] = Field(default_factory=dict, description="Files it did not take, with the reason.")
    error: str | None = Field(None, description="Why it did not answer (a worker that died, timed out or was "
                                                "starting).")


class ReloadResponse(BaseModel):
    reloaded: bool = Field(description="Every worker re-read the model folder and serves what it holds.")
    workers: int = Field(description="Worker processes of the service.")
    workers_reloaded: int = Field(description="How many of them reloaded (answered, and serve the folder's set).")
    default: str | None = Field(description="The model used without ?model=, after the reload.")
    models: dict[str, str] = Field(description="The models served after the reload: name -> version.")
    added: list[str] = Field(description="Models that were not served before.")
    replaced: list[str] = Field(description="Models whose files changed: a new version is served.")
    removed: list[str] = Field(description="Models whose files are gone: no longer served.")
    unchanged: list[str] = Field(description="Models served as before.")
    failed: dict[str, str] = Field(description="Files that were not taken, with the reason (also in /readyz).")
    worker_outcomes: list[WorkerOutcome] = Field(description="Each worker's outcome.")


class ReloadProblem(ReloadResponse):
    """A refused or incomplete reload: the one error shape (``detail``) with the reload's outcome beside it."""

    detail: list[ErrorDetail]


@router.post("/reload", response_model=ReloadResponse, operation_id="reload_models",
             summary="Re-read the model folder: new, replaced and removed models, without a restart",
             responses={401: {"model": ErrorResponse, "description": "API keys are configured and X-API-Key is "
                                                                     "missing or wrong."},
                        409: {"model": ReloadProblem, "description": "The folder was refused (a broken file): the "
                                                                     "served models are unchanged; `failed` says why."},
                        503: {"model": ReloadProblem, "description": "A worker did not answer or was starting."}})
async def reload_models(request: Request) -> JSONResponse:
    app = request.app
    link = workers.supervisor_link()
    if link is None:
        outcomes = [await reload_here(app, "POST /admin/reload")]
        total = 1
    else:
        total = app.state.settings.workers
        try:
            outcomes = await link.reload_all()
        except TimeoutError:
            outcomes = [{"pid": None, "reloaded": False, "error": "the supervisor did not answer"}]
    return answer(app, outcomes, total)


def answer(app: FastAPI, outcomes: list[dict], total: int) -> JSONResponse:
    """The response to a reload from every worker's outcome; the lists of changes are this worker's."""
    own = next((o for o in outcomes if o.get("pid") == os.getpid()), None) or next(
        (o for o in outcomes if "models" in o), {})
    repository = app.state.core.repository
    reloaded = sum(bool(outcome.get("reloaded")) for outcome in outcomes)
    body = {
        "reloaded": reloaded == total and len(outcomes) == total, "workers": total, "workers_reloaded": reloaded,
        "default": own.get("default", repository.default_name),
        "models": own.get("models", {name: model.version for name, model in repository.models.items()}),
        **{key: own.get(key, []) for key in ("added", "replaced", "removed", "unchanged")},
        "failed": own.get("failed", {}),
        "worker_outcomes": [WorkerOutcome.model_validate({key: outcome.get(key) for key in WorkerOutcome.model_fields
                                                          if key in outcome}).model_dump()
                            for outcome in outcomes],
    }
    if body["reloaded"]:
        return JSONResponse(body)
    # Refused: a worker re-read the folder and would not serve it (not one that was stopping).
    refused = [outcome for outcome in outcomes if outcome.get("failed") and not outcome.get("reloaded")
               and SHUTTING_DOWN not in outcome["failed"]]
    if refused:
        failed = {name: reason for outcome in refused for name, reason in outcome["failed"].items()}
        detail = [problem("reload_refused", () if name == FOLDER else ("model", name),
                          f"{reason}; the served models are unchanged") for name, reason in failed.items()]
        return JSONResponse({"detail": detail, **body}, 409)
    reasons = "; ".join(f"pid {o.get('pid')}: {o.get('error') or '; '.join(o.get('failed', {}).values())}"
                        for o in outcomes if not o.get("reloaded"))
    detail = [problem("reload_incomplete", (), f"{total - reloaded} of {total} workers did not reload: {reasons}")]
    return JSONResponse({"detail": detail, **body}, 503, headers={"Retry-After": "1"})


async def reload_here(app: FastAPI, reason: str) -> dict:
    """Reload this process's models; its outcome as a plain dict (what a worker sends to the supervisor)."""
    core, settings = app.state.core, app.state.settings
    log.info("reloading %s (%s)", settings.model_dir, reason)
    rescan = await core.reload(settings)
    if rescan.applied:
        app.openapi_schema = None  # it lists the model names
    repository = core.repository
    return {"pid": os.getpid(), "reloaded": rescan.applied, "default": repository.default_name,
            "models": {name: model.version for name, model in repository.models.items()},
            "added": rescan.added, "replaced": rescan.replaced, "removed": rescan.removed,
            "unchanged": rescan.unchanged, "failed": rescan.failed}


@dataclass
class BackgroundReloads:
    """What reloads a process without a request: SIGHUP, the supervisor's rounds, polling. ``start`` in the
    app's lifespan, ``stop`` before the core closes."""

    app: FastAPI
    tasks: set[asyncio.Task] = field(default_factory=set)
    poller: asyncio.Task | None = None
    sighup: bool = False
    link: workers.SupervisorLink | None = None

    def start(self) -> BackgroundReloads:
        loop = asyncio.get_running_loop()
        try:  # the main thread only: not under a test client, whose app runs in a thread of its own
            loop.add_signal_handler(signal.SIGHUP, self._spawn, "SIGHUP")
            self.sighup = True
        except (ValueError, RuntimeError, NotImplementedError):
            log.debug("SIGHUP does not reload here: not the main thread")
        self.link = workers.supervisor_link()
        if self.link is not None:
            self.link.attach(lambda: reload_here(self.app, "the supervisor's reload round"))
        seconds = self.app.state.settings.reload_poll_seconds
        if seconds > 0:
            self.poller = asyncio.create_task(self._poll(seconds))
        return self

    async def stop(self) -> None:
        if self.sighup:
            loop = asyncio.get_running_loop()
            loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no longer a reload, and still not a stop
        if self.link is not None:
            self.link.detach()
        pending = [*self.tasks, *([self.poller] if self.poller is not None else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, reason: str) -> None:
        task = asyncio.ensure_future(self._reload(reason))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reload(self, reason: str) -> None:
        try:
            await reload_here(self.app, reason)
        except Exception:
            log.exception("reload (%s) failed", reason)

    async def _poll(self, seconds: float) -> None:
        model_dir = self.app.state.settings.model_dir
        applied = previous = await asyncio.to_thread(folder_signature, model_dir)
        while True:
            await asyncio.sleep(seconds)
            with contextlib.suppress(OSError):
                current = await asyncio.to_thread(folder_signature, model_dir)
                if current != applied and current == previous:  # changed, and settled since the last check
                    await self._reload(f"the files in {model_dir} changed")
                    applied = current
                previous = current
