"""Where ``python -m bulk`` writes: the Parquet output (one file, or a folder of parts) and the bad-rows file.

The output is written next to its final place (``<output>.partial-<pid>``) and moved there once the run has
finished, so a failed run leaves no half-written output and an existing one is replaced only at the end, and only
with ``--overwrite``. The bad-rows file, ``<output>.bad_rows.jsonl``, gets one JSON object per row that was not
scored: ``{"id": ..., "reason": ...}`` (empty when every row was scored).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_SUFFIXES = (".parquet", ".pq")
BAD_ROWS_SUFFIX = ".bad_rows.jsonl"
ROWS_PER_PART = 1_000_000  # a folder output starts a new part file after this many rows
ROWS_PER_GROUP = 65_536  # rows gathered into one Parquet row group (blocks are far smaller)
PART_NAME = "part-{:05d}.parquet"


class OutputError(Exception):
    """The output cannot be written (it exists, or its folder does not): one line that says what to do."""


def bad_rows_path(output: Path) -> Path:
    return output.with_name(output.name + BAD_ROWS_SUFFIX)


def check_output(output: str | Path, overwrite: bool) -> Path:
    """The output path, after checking that it (and its bad-rows file) can be written. An existing output is
    refused without ``overwrite``; with it, a folder is replaced only if it holds nothing but Parquet parts, so
    a mistyped ``--output`` cannot delete someone's folder."""
    output = Path(output)
    if not output.parent.is_dir():
        raise OutputError(f"cannot write {output}: folder {output.parent} does not exist")
    existing = [path for path in (output, bad_rows_path(output)) if path.exists() or path.is_symlink()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --output")
    if output.is_dir() and not output.is_symlink():
        others = [path.name for path in output.iterdir() if not path.name.endswith(PARQUET_SUFFIXES)]
        if others:
            listed = ", ".join(sorted(others)[:3])
            raise OutputError(f"{output} is a folder with files other than Parquet parts ({listed}); not replacing it, "
                              "choose another --output")
    return output


def is_single_file(output: Path) -> bool:
    """A name ending in .parquet (or .pq) is one file; anything else is a folder of parts."""
    return output.name.lower().endswith(PARQUET_SUFFIXES)


class ParquetOutput:
    """Streams scored tables into the output; ``commit`` moves it into place, ``discard`` removes it."""

    def __init__(self, output: Path, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART):
        self.output, self.schema, self.rows_per_part = output, schema, rows_per_part
        self.single = is_single_file(output)
        self.partial = output.with_name(f"{output.name}.partial-{os.getpid()}")
        self.bad_partial = output.with_name(f"{output.name}{BAD_ROWS_SUFFIX}.partial-{os.getpid()}")
        if not self.single:
            self.partial.mkdir()
        self._bad = open(self.bad_partial, "w", encoding="utf-8")
        self._writer: pq.ParquetWriter | None = None
        self._part, self._part_rows = 0, 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = self.bad_rows = 0

    def _open_part(self) -> pq.ParquetWriter:
        path = self.partial if self.single else self.partial / PART_NAME.format(self._part)
        return pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        """Keeps ``table``'s rows (the output's columns); they are written a row group at a time."""
        if not table.num_rows:
            return
        self._pending.append(table.select(self.schema.names).cast(self.schema))
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            self._writer = self._open_part()
        elif not self.single and self._pending_rows and self._part_rows >= self.rows_per_part:
            self._writer.close()
            self._part, self._part_rows = self._part + 1, 0
            self._writer = self._open_part()
        if self._pending_rows:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self._pending_rows)
            self._part_rows += self._pending_rows
        self._pending, self._pending_rows = [], 0

    def write_bad(self, ids: list[str], reasons: list[str]) -> None:
        for row_id, reason in zip(ids, reasons, strict=True):
            self._bad.write(json.dumps({"id": row_id, "reason": reason}, ensure_ascii=False) + "\n")
        self.bad_rows += len(ids)

    def commit(self) -> None:
        """Close the files and move them to the output's place (replacing what ``check_output`` allowed)."""
        self._flush()  # with no row scored: still a readable (empty) output
        self._writer.close()
        self._bad.close()
        _remove(self.output)
        self.partial.rename(self.output)
        self.bad_partial.replace(bad_rows_path(self.output))

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._bad.close()
        _remove(self.partial)
        self.bad_partial.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
