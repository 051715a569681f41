"""The Ray Data pipeline of ``python -m bulk``: read ─▶ score in an actor pool ─▶ write, streaming.

    input ─▶ read tasks (bulk/sources.py, on the driver's node) ─▶ blocks of --batch-size rows
          ─▶ map_batches(RayScorer, an actor pool spread over the cluster's nodes)
          ─▶ the driver: Parquet output + bad-rows file (bulk/output.py), progress, summary

Each actor loads the models once (``BatchScorer``: the service's repository, checks and scoring rules) and then
scores block after block. Ray Data streams: blocks are read as the actors ask for them, so memory stays flat as
the input grows. The read tasks run on the driver's node, so a local input file works on a cluster too; the
driver writes the output, so it lands on the machine that ran ``python -m bulk``.
"""

from __future__ import annotations

import functools
import logging
import math
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from bulk.output import ParquetOutput, bad_rows_path
from bulk.scoring import ID, INPUT_SCHEMA, PROBLEM, BatchScorer, output_schema
from bulk.sources import Source, read_chunk
from service.config import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# The columns the actors add to each block (the driver counts them, never writes them): the Ray node that scored it,
# when (wall clock, seconds) the scoring started and ended, and the actor's peak memory so far.
NODE, STARTED, ENDED, RSS = "node", "scoring_started", "scoring_ended", "actor_peak_rss_mb"
# Settings the actors need not see (secrets stay on the driver).
PRIVATE_SETTINGS = {"api_keys", "api_keys_file"}
NODE_ID_LABEL = "ray.io/node-id"  # the label Ray gives every node
ACTOR_START_TIMEOUT = 600  # seconds for the actor pool to start (workers, imports, the models loaded and warmed up)
COUNT_TIMEOUT = 60  # seconds to wait for the input's row count (started before Ray: usually done by now)
CSV_BYTES_PER_ROW = 1300  # a CSV's rows are not counted (quoted fields span lines): an IMDB review is ~1.3 kB


@dataclass
class Summary:
    rows: int = 0  # rows read: scored + bad
    scored: int = 0
    bad_rows: int = 0
    seconds: float = 0.0  # from the start of the run (Ray's start included) to the output's commit
    first_block_seconds: float = 0.0  # from the start until an actor began scoring (Ray, actors, models loading)
    steady_rows_per_second: float = 0.0  # rows over the time from the first block's scoring start to the last's end
    busy_seconds: float = 0.0  # the actors' time in score_table, summed over the blocks
    actor_peak_rss_mb: float = 0.0  # the largest peak resident memory of an actor (flat as the input grows)
    driver_peak_rss_mb: float = 0.0
    models: list[str] = field(default_factory=list)
    actors: int = 0
    nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> rows its actors scored
    batches_per_node: dict[str, int] = field(default_factory=dict)
    output: str = ""
    bad_rows_file: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}

    def line(self) -> str:
        nodes = ", ".join(f"{node[:8]}: {rows}" for node, rows in sorted(self.nodes.items()))
        return (f"bulk: {self.scored} reviews scored with {', '.join(self.models)} in {self.seconds:.1f} s "
                f"({self.rows_per_second:.0f} rows/s; scoring began at {self.first_block_seconds:.1f} s and ran at "
                f"{self.steady_rows_per_second:.0f} rows/s), {self.actors} actors on {len(self.nodes)} node(s) "
                f"({nodes}); {self.bad_rows} bad rows in {self.bad_rows_file}; output {self.output}")


class RayScorer:
    """The actor of the pool: the models loaded once, then a block of rows scored per call. ``scorer_class`` gives
    it the run's settings and models."""

    SETTINGS: dict = {}
    REQUESTED: Sequence[str] | None = None

    def __init__(self):
        self.scorer = BatchScorer.from_settings(Settings(**self.SETTINGS), self.REQUESTED)
        self.scorer.warm_up()
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.time()
        scored = self.scorer.score_table(batch)
        rows = scored.num_rows
        return (scored.append_column(NODE, pa.array([self.node] * rows, pa.string()))
                .append_column(STARTED, pa.array([started] * rows, pa.float64()))
                .append_column(ENDED, pa.array([time.time()] * rows, pa.float64()))
                .append_column(RSS, pa.array([peak_rss_mb()] * rows, pa.float64())))


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scorer_class(settings: Settings, requested: Sequence[str] | None) -> type[RayScorer]:
    """``RayScorer`` for one run: the settings (without the API keys: secrets stay on the driver) and the models
    travel with the class, not as constructor arguments in the object store, which an actor restart could lose."""
    return type("RayScorer", (RayScorer,), {"SETTINGS": settings.model_dump(exclude=PRIVATE_SETTINGS),
                                            "REQUESTED": list(requested) if requested is not None else None})


def _spread() -> dict:
    """The actors go to as many nodes as there are (Ray's SPREAD strategy), not first onto the driver's."""
    return {"scheduling_strategy": "SPREAD"}


class Progress:
    """A progress line on stderr: rows done, rows/s and, when the input's size is known, the share and ETA.
    Rewritten in place on a terminal; elsewhere (logs, CI) a line every ``every`` seconds."""

    def __init__(self, total: int | Future | None, stream: TextIO | None = None, every: float = 10.0,
                 enabled: bool = True):
        self._total, self.stream, self.enabled = total, stream or sys.stderr, enabled
        self.tty = self.stream.isatty()
        self.every = 0.5 if self.tty else every
        self.started = time.monotonic()
        self.shown = self.started

    @property
    def total(self) -> int | None:
        """The input's rows, once known (``total`` may be a future that is still counting, or failed)."""
        if isinstance(self._total, Future):
            if not self._total.done() or self._total.exception() is not None:
                return None
            return self._total.result()
        return self._total

    def update(self, done: int, bad: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self.shown >= self.every:
            self.shown = now
            self._show(done, bad, now)

    def _show(self, done: int, bad: int, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        text, total = f"bulk: {done}", self.total
        if total:
            remaining = (total - done) / rate if rate > 0 else float("inf")
            eta = f"{remaining:.0f} s" if remaining != float("inf") else "?"
            text += f"/{total} rows ({100 * done / total:.0f} %), {rate:.0f} rows/s, ETA {eta}"
        else:
            text += f" rows, {rate:.0f} rows/s"
        text += f", {bad} bad, {elapsed:.0f} s"
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def start_ray(address: str | None) -> None:
    """Join the cluster at ``address``, or start Ray on this machine (``address="local"``: never an existing
    local cluster by accident). The workers import this checkout (PYTHONPATH) with the driver's log level."""
    runtime_env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}}
    ray.init(address=address or "local", runtime_env=runtime_env, include_dashboard=False if not address else None,
             logging_level=logging.WARNING, log_to_driver=True, configure_logging=True)
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class BulkInput(Datasource):
    """A ``Source`` as a Ray Data datasource: one read task per read unit, each yielding blocks as it reads."""

    def __init__(self, source: Source, block_rows: int):
        self.source, self.block_rows = source, block_rows

    def get_name(self) -> str:
        return f"BulkInput({self.source.format})"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        return [ReadTask(functools.partial(read_chunk, chunk, self.block_rows),
                         BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None,
                                       input_files=tuple(map(str, chunk.files[:1]))),
                         schema=INPUT_SCHEMA, per_task_row_limit=per_task_row_limit)
                for chunk in self.source.chunks()]


def read_blocks(source: Source, total: int | Future | None, batch_size: int) -> int:
    """How many blocks Ray Data should cut the input into: one per ``batch_size`` rows, so every actor gets some.

    Ray Data merges what a read task yields into blocks of up to 128 MB, so a one-file input (one read task) is one
    block, one actor call, one actor, however many actors the pool has; and without a number it cuts each read task's
    output into ~200 blocks of a row or two, which the map then regathers (two-node cluster, 2026-11-30, 300 rows in
    batches of 16: that read took 1.01 s, slower than one actor scores, and one actor took 15 of the 19 batches, or all
    of them). With a block per batch the blocks are ready as soon as the file is read and the least busy actor takes
    the next one (the same run: 144 and 158 rows, scoring at 1,220 rows/s instead of 248)."""
    rows = total
    if isinstance(total, Future):
        try:
            rows = total.result(timeout=COUNT_TIMEOUT)
        except Exception:  # noqa: BLE001 (still counting, or the count failed: the read reports a bad input itself)
            rows = None
    if rows is None:
        rows = sum(file.stat().st_size for file in source.files) // CSV_BYTES_PER_ROW
    return max(len(source.chunks()), math.ceil(rows / batch_size))


def run(source: Source, output: Path, settings: Settings, models: list[str], *, address: str | None = None,
        batch_size: int = 256, concurrency: int | None = None, total: int | Future | None = None, progress: bool = True,
        ray_progress_bars: bool = False) -> Summary:
    """Scores ``source`` into ``output`` with ``models`` (resolved names) on Ray (started here, or the cluster at
    ``address``)."""
    started = time.monotonic()
    start_ray(address)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = ray_progress_bars
        if not ray_progress_bars:  # ours is on stderr: no warning that Ray Data's are off
            logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
        # Every actor of the pool has loaded its models before the first block goes out, so the work spreads over all
        # of them (and a pool the cluster cannot place fails with Ray's timeout error instead of waiting forever).
        context.wait_for_min_actors_s = ACTOR_START_TIMEOUT
        # Each block to the least busy actor, wherever it is: with Ray Data's default (locality), the blocks, read on
        # the driver's node, would go to that node's actors as long as they keep up, and the other nodes would idle.
        # Scoring is CPU-bound; moving a block of reviews to another node costs far less than scoring it.
        context.execution_options.actor_locality_enabled = False
        actors = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Reading is light: no CPU of its own (the CPUs go to the actors), on the driver's node (its files).
        here = {NODE_ID_LABEL: ray.get_runtime_context().get_node_id()}
        dataset = ray.data.read_datasource(BulkInput(source, batch_size), num_cpus=0, label_selector=here,
                                           override_num_blocks=read_blocks(source, total, batch_size))
        dataset = dataset.map_batches(
            scorer_class(settings, models), batch_size=batch_size, batch_format="pyarrow", zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1, ray_remote_args_fn=_spread)
        return _drain(dataset, output, models, actors, total, progress, started)
    finally:
        ray.shutdown()


def _drain(dataset, output: Path, models: list[str], actors: int, total: int | Future | None, progress: bool,
           started: float) -> Summary:
    """Pulls the scored blocks through the driver into the output and the bad-rows file."""
    writer = ParquetOutput(output, output_schema(models))
    summary = Summary(models=list(models), actors=actors)
    nodes: Counter[str] = Counter()
    batches: Counter[str] = Counter()
    display = Progress(total, enabled=progress)
    first, last = float("inf"), float("-inf")  # when the actors began scoring the first block, finished the last
    started_at = time.time() - (time.monotonic() - started)  # the run's start on the actors' (wall) clock
    try:
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            if table.num_rows:
                first = min(first, pc.min(table.column(STARTED)).as_py())
                last = max(last, pc.max(table.column(ENDED)).as_py())
                blocks = pc.unique(pc.subtract(table.column(ENDED), table.column(STARTED)))  # one value a block
                summary.busy_seconds += pc.sum(blocks).as_py()
                summary.actor_peak_rss_mb = max(summary.actor_peak_rss_mb, pc.max(table.column(RSS)).as_py())
            node_column = table.column(NODE)
            for node, rows in zip(*_value_counts(node_column), strict=True):
                nodes[node] += rows
                batches[node] += 1
            bad = pc.is_valid(table.column(PROBLEM))
            bad_rows = table.filter(bad)
            if bad_rows.num_rows:
                writer.write_bad(bad_rows.column(ID).to_pylist(), bad_rows.column(PROBLEM).to_pylist())
            writer.write(table.filter(pc.invert(bad)))
            display.update(writer.rows + writer.bad_rows, writer.bad_rows)
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    finally:
        display.close()
    summary.rows, summary.scored, summary.bad_rows = writer.rows + writer.bad_rows, writer.rows, writer.bad_rows
    summary.seconds = time.monotonic() - started
    if last > first:
        summary.first_block_seconds = round(first - started_at, 2)
        summary.steady_rows_per_second = round(summary.rows / (last - first), 1)
    summary.nodes, summary.batches_per_node = dict(nodes), dict(batches)
    summary.driver_peak_rss_mb = round(peak_rss_mb(), 1)
    summary.busy_seconds = round(summary.busy_seconds, 2)
    summary.output, summary.bad_rows_file = str(output), str(bad_rows_path(output))
    return summary


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()
