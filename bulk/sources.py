"""What ``python -m bulk`` reads: each input format as blocks of rows ``id``, ``text``, ``problem``.

* JSONL (``.jsonl``, ``.ndjson``): one JSON object per line with ``text`` and an optional ``id`` (a string or an
  integer). Blank lines are skipped.
* CSV (``.csv``): a header with a ``text`` column and an optional ``id`` column.
* Parquet (``.parquet``, ``.pq``): a ``text`` column and an optional ``id`` column (this tool's output is Parquet
  too, so a folder of its parts can be read back).
* A folder of ``.txt`` files, one review each (recursively); the id is the file's path in the folder (its name).
* The aclImdb archive (``.tar.gz``, ``.tgz``, ``.tar``: ``aclImdb_v1_labeled.tar.gz`` or the official
  ``aclImdb_v1.tar.gz``), read in place as ``training/data.py`` reads it: the members
  ``aclImdb/{train,test}/{pos,neg}/{id}_{rating}.txt``; the id is the path below ``aclImdb/``, e.g.
  ``test/pos/1234_9.txt``. ``split`` keeps one split.

A folder of ``.jsonl``, ``.csv`` or ``.parquet`` files is read as one input (files starting with ``.`` or ``_``
are left out, as Parquet readers do). Without an ``id``, a row's id is ``<file>:<line>`` (JSONL: the line number;
CSV and Parquet: the row number), so every row can be found again.

A row the reader cannot make a review of (not JSON, not an object, no ``text``, ``text`` not a string, a
malformed CSV row, a file that is not UTF-8) comes with its ``problem`` set: it is reported, never dropped.

Each source is split into read units (``chunks``): one per file, groups of ``.txt`` files, the whole archive
(gzip cannot be split). A unit yields blocks of at most ``block_rows`` rows as it reads, so memory stays flat
however large the input is.
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from bulk.scoring import ID, INPUT_SCHEMA, PROBLEM, TEXT
from training.data import EXPECTED_LAYOUT, SPLITS
from training.data import _parse as parse_review_path  # the dataset reader's own rule for member names

JSONL, CSV, PARQUET, TXT, ACLIMDB = "jsonl", "csv", "parquet", "txt", "aclimdb"
FORMATS = (JSONL, CSV, PARQUET, TXT, ACLIMDB)
SUFFIXES = {".jsonl": JSONL, ".ndjson": JSONL, ".csv": CSV, ".parquet": PARQUET, ".pq": PARQUET, ".txt": TXT}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
TXT_FILES_PER_CHUNK = 512
DEFAULT_BLOCK_ROWS = 1024


class InputError(Exception):
    """The input cannot be read as any format: the message says why, in one line."""


@dataclass(frozen=True)
class Chunk:
    """One read unit: a format, its files (one, or a group of .txt files) and the folder ids are relative to."""

    format: str
    files: tuple[Path, ...]
    root: Path
    split: str | None = None


@dataclass(frozen=True)
class Source:
    """An input, its format detected and its files listed (``open_source``)."""

    path: Path
    format: str
    files: tuple[Path, ...]
    root: Path  # the folder ids are made relative to
    split: str | None = None

    def chunks(self) -> list[Chunk]:
        if self.format == TXT:
            groups = [self.files[start:start + TXT_FILES_PER_CHUNK]
                      for start in range(0, len(self.files), TXT_FILES_PER_CHUNK)]
        else:
            groups = [(file,) for file in self.files]
        return [Chunk(self.format, group, self.root, self.split) for group in groups]

    def count(self) -> int | None:
        """How many rows the input has, when that is cheap to know (for the progress's ETA); None if not."""
        if self.format == TXT:
            return len(self.files)
        if self.format == PARQUET:
            return sum(pq.ParquetFile(file).metadata.num_rows for file in self.files)
        if self.format == JSONL:
            total = 0
            for file in self.files:
                with open(file, "rb") as handle:
                    total += sum(1 for line in handle if line.strip())
            return total
        if self.format == ACLIMDB:
            return sum(1 for _ in _archive_members(self.files[0], self.split, read=False))
        return None  # CSV: quoted fields may span lines; counting means parsing

    def rows(self, block_rows: int = DEFAULT_BLOCK_ROWS) -> Iterator[pa.Table]:
        """Every block of the input in one process (tests, the in-process benchmark)."""
        for chunk in self.chunks():
            yield from read_chunk(chunk, block_rows)


def open_source(path: str | Path, split: str | None = None) -> Source:
    """The input at ``path``, its format detected from its name (a folder: from the files in it). InputError
    when it does not exist or is no format this tool reads."""
    path = Path(path)
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; the aclImdb archive has {', '.join(SPLITS)}")
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        source = _folder_source(path)
    else:
        source = _file_source(path)
    if split is not None and source.format != ACLIMDB:
        raise InputError(f"--split applies to the aclImdb archive only; {path} is {source.format}")
    source = Source(source.path, source.format, source.files, source.root, split)
    _check_columns(source)
    return source


def _file_source(path: Path) -> Source:
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        if not tarfile.is_tarfile(path):
            raise InputError(f"{path} is not a readable tar archive; expected the aclImdb archive "
                             "(aclImdb_v1_labeled.tar.gz or aclImdb_v1.tar.gz)")
        return Source(path, ACLIMDB, (path,), path.parent)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None or fmt == TXT:
        what = "a single .txt file: give the folder of .txt files" if fmt == TXT else f"unknown format {path.suffix!r}"
        raise InputError(f"cannot read {path}: {what}; inputs are .jsonl, .csv, .parquet, a folder of .txt files "
                         "or the aclImdb .tar.gz archive")
    return Source(path, fmt, (path,), path.parent)


def _folder_source(path: Path) -> Source:
    files = sorted(file for file in path.rglob("*") if file.is_file()
                   and not any(part.startswith((".", "_")) for part in file.relative_to(path).parts))
    by_format: dict[str, list[Path]] = {}
    for file in files:
        fmt = SUFFIXES.get(file.suffix.lower())
        if fmt is not None:
            by_format.setdefault(fmt, []).append(file)
    if not by_format:
        raise InputError(f"folder {path} has no .txt, .jsonl, .csv or .parquet files")
    if len(by_format) > 1:
        found = ", ".join(f"{len(found)} {fmt}" for fmt, found in sorted(by_format.items()))
        raise InputError(f"folder {path} mixes input formats ({found}); give one format per folder")
    ((fmt, found),) = by_format.items()
    return Source(path, fmt, tuple(found), path)


def _check_columns(source: Source) -> None:
    """A CSV or Parquet input without a text column fails before anything runs (in every file)."""
    for file in source.files:
        if source.format == PARQUET:
            try:
                names = pq.ParquetFile(file).schema_arrow.names
            except (OSError, pa.ArrowException) as error:
                raise InputError(f"{file} is not a readable Parquet file ({error})") from None
        elif source.format == CSV:
            with open(file, encoding="utf-8", errors="replace", newline="") as handle:
                names = next(csv.reader(handle), [])
        else:
            return
        if TEXT not in names:
            raise InputError(f"{file} has no {TEXT!r} column (columns: {', '.join(names) or 'none'})")


def read_chunk(chunk: Chunk, block_rows: int = DEFAULT_BLOCK_ROWS) -> Iterator[pa.Table]:
    """The rows of one read unit, in blocks of at most ``block_rows`` (``INPUT_SCHEMA``)."""
    readers = {JSONL: _jsonl_rows, CSV: _csv_rows, PARQUET: _parquet_rows, TXT: _txt_rows, ACLIMDB: _archive_rows}
    rows = _Blocks(block_rows)
    for file in chunk.files:
        for row in readers[chunk.format](file, chunk):
            block = rows.add(*row)
            if block is not None:
                yield block
    block = rows.flush()
    if block is not None:
        yield block


class _Blocks:
    """Rows gathered into pyarrow tables of ``size`` rows."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.ids: list[str] = []
        self.texts: list[str | None] = []
        self.problems: list[str | None] = []

    def add(self, row_id: str, text: str | None, problem: str | None = None) -> pa.Table | None:
        self.ids.append(row_id)
        self.texts.append(text)
        self.problems.append(problem)
        return self.flush() if len(self.ids) >= self.size else None

    def flush(self) -> pa.Table | None:
        if not self.ids:
            return None
        table = pa.Table.from_pydict({ID: self.ids, TEXT: self.texts, PROBLEM: self.problems}, schema=INPUT_SCHEMA)
        self.ids, self.texts, self.problems = [], [], []
        return table


Row = tuple[str, str | None, str | None]


def _name(file: Path, chunk: Chunk) -> str:
    return file.relative_to(chunk.root).as_posix()


def _id_of(value: object, default: str) -> tuple[str, str | None]:
    """A row's id as a string, and a problem when the given one is neither a string nor an integer."""
    if value is None:
        return default, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    return default, f"id is not a string or an integer ({type(value).__name__})"


def _jsonl_rows(file: Path, chunk: Chunk) -> Iterator[Row]:
    name = _name(file, chunk)
    with open(file, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            where = f"{name}:{number}"
            try:
                record = json.loads(raw)
            except UnicodeDecodeError as error:
                yield where, None, f"line {number} is not UTF-8 ({error.reason} at byte {error.start})"
                continue
            except ValueError as error:
                yield where, None, f"line {number} is not valid JSON ({error})"
                continue
            if not isinstance(record, dict):
                yield where, None, f"line {number} is not a JSON object ({type(record).__name__})"
                continue
            row_id, problem = _id_of(record.get(ID), where)
            text = record.get(TEXT)
            if problem is None:
                if TEXT not in record:
                    problem = f"no {TEXT!r} field"
                elif text is None:
                    problem = "no text (null)"
                elif not isinstance(text, str):
                    problem = f"text is not a string ({type(text).__name__})"
            yield row_id, text if isinstance(text, str) else None, problem


def _csv_rows(file: Path, chunk: Chunk) -> Iterator[Row]:
    name = _name(file, chunk)
    malformed: list[Row] = []

    def skip_malformed(row: pa_csv.InvalidRow) -> str:
        line = f"line {row.number}" if row.number is not None else "a row"
        malformed.append((f"{name}:{row.number}", None,
                          f"{line} is not a CSV row of the header's {row.expected_columns} columns "
                          f"(has {row.actual_columns})"))
        return "skip"

    reader = pa_csv.open_csv(
        file, read_options=pa_csv.ReadOptions(use_threads=False, block_size=1 << 20),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip_malformed),
        convert_options=pa_csv.ConvertOptions(column_types={ID: pa.string(), TEXT: pa.string()},
                                              include_columns=[ID, TEXT], include_missing_columns=True,
                                              strings_can_be_null=False, quoted_strings_can_be_null=False))
    number = 0
    for batch in reader:
        yield from malformed
        malformed.clear()
        for row_id, text in zip(batch.column(ID).to_pylist(), batch.column(TEXT).to_pylist(), strict=True):
            number += 1
            yield row_id or f"{name}:{number}", text, None
    yield from malformed


def _parquet_rows(file: Path, chunk: Chunk) -> Iterator[Row]:
    name = _name(file, chunk)
    parquet = pq.ParquetFile(file)
    columns = [column for column in (ID, TEXT) if column in parquet.schema_arrow.names]
    text_type = parquet.schema_arrow.field(TEXT).type
    text_is_string = pa.types.is_string(text_type) or pa.types.is_large_string(text_type)
    number = 0
    for batch in parquet.iter_batches(batch_size=4096, columns=columns):
        ids = batch.column(ID).to_pylist() if ID in columns else [None] * batch.num_rows
        texts = batch.column(TEXT).to_pylist()
        for row_id, text in zip(ids, texts, strict=True):
            number += 1
            row_id, problem = _id_of(row_id, f"{name}:{number}")
            if problem is None and not text_is_string and text is not None:
                problem = f"text is not a string ({text_type})"
            elif problem is None and text is None:
                problem = "no text (null)"
            yield row_id, text if text_is_string else None, problem


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text ({error.reason} at byte {error.start})"


def _txt_rows(file: Path, chunk: Chunk) -> Iterator[Row]:
    yield _name(file, chunk), *_decode(file.read_bytes())


def _archive_members(path: Path, split: str | None, read: bool = True) -> Iterator[tuple[str, bytes | None]]:
    """The reviews of the aclImdb archive, as ``training/data.py`` finds them: (id, the file's bytes)."""
    try:
        with tarfile.open(path, mode="r:*") as archive:
            for member in archive:
                parsed = parse_review_path(member.name) if member.isfile() else None
                if parsed is None or (split is not None and parsed[0][0] != split):
                    continue
                review_id = member.name.replace("\\", "/").split("aclImdb/", 1)[-1]
                yield review_id, archive.extractfile(member).read() if read else None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise InputError(f"{path} is not a readable tar archive ({error}); expected the aclImdb archive") from None


def _archive_rows(file: Path, chunk: Chunk) -> Iterator[Row]:
    for review_id, raw in _archive_members(file, chunk.split):
        yield review_id, *_decode(raw)


def check_archive(source: Source) -> None:
    """An archive with no review in the dataset's layout (of the split asked for) is not the aclImdb archive; it
    fails here, before anything runs (reading up to the first review: the archive's start, nearly always)."""
    if source.format == ACLIMDB and next(_archive_members(source.files[0], source.split, read=False), None) is None:
        split = f"{source.split} " if source.split else ""
        raise InputError(f"{source.path} has no {split}reviews in the aclImdb layout ({EXPECTED_LAYOUT})")
