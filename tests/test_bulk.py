"""Bulk scoring on Ray Data (``python -m bulk``, bulk/): the service's scores, every input format, bad rows, the
output rules, and real Ray runs: on a two-node cluster started here with ``ray start`` and on Ray started by the
tool itself."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa
import pyarrow.csv  # noqa: F401 (pa.csv)
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from bulk import output as output_module
from bulk.__main__ import main
from bulk.output import bad_rows_path, check_output
from bulk.pipeline import CSV_BYTES_PER_ROW, read_blocks
from bulk.scoring import BatchScorer, label_column, output_schema, score_column
from bulk.sources import open_source
from service.app import create_app
from service.config import Settings
from tests.conftest import (
    MODEL_NAMES,
    MODELS_DIR,
    REPO_ROOT,
    free_port,
    read_sample_reviews,
    wait_until_ready,
    write_review_tarball,
)

ray = pytest.importorskip("ray", reason="bulk scoring needs Ray: pip install -r requirements-bulk.txt")

PYTHON = sys.executable
RAY = str(Path(sys.executable).with_name("ray"))
# The test cluster listens on this machine only for this test: no token authentication (Ray 2.60 turns it on for a
# new head; the second node and the driver would need the token), no address inherited from the environment.
RAY_ENV = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
CLUSTER_MODELS = ["conv1d", "bigram_bag"]
TOLERANCE = 1e-6  # /predict runs a request as one onnxruntime batch, bulk in batches of SENTIMENT_BATCH_MAX_SIZE


@pytest.fixture(scope="module")
def reviews() -> list[dict]:
    """300 reviews of the committed sample, with their ids as strings."""
    return [{"id": f"{review['split']}/{review['label']}/{review['id']}", "text": review["text"]}
            for review in read_sample_reviews()[:300]]


def predict(texts: list[str], models: list[str]) -> dict[str, tuple[list[float], list[str]]]:
    """What POST /predict answers for ``texts``, per model (scores, labels), 256 reviews per request."""
    with TestClient(create_app(Settings(model_dir=MODELS_DIR, access_log=False))) as client:
        wait_until_ready(client)
        answers = {model: ([], []) for model in models}
        for start in range(0, len(texts), 256):
            response = client.post("/predict", params={"model": models}, json={"reviews": texts[start:start + 256]})
            assert response.status_code == 200, response.text
            for result in response.json()["results"]:
                answers[result["model"]][0].extend(p["score"] for p in result["predictions"])
                answers[result["model"]][1].extend(p["label"] for p in result["predictions"])
    return answers


def assert_same_as_predict(table: pa.Table, texts_by_id: dict[str, str], models: list[str]) -> None:
    """Every scored row of ``table`` has /predict's score and label for its text, for each model."""
    rows = table.to_pylist()
    expected = predict([texts_by_id[row["id"]] for row in rows], models)
    for model in models:
        scores, labels = expected[model]
        for row, score, label in zip(rows, scores, labels, strict=True):
            assert row[score_column(model)] == pytest.approx(score, abs=TOLERANCE), (model, row["id"])
            if abs(score - 0.5) > TOLERANCE:
                assert row[label_column(model)] == label, (model, row["id"])


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


# ---- the service's scores, without Ray


def test_the_scores_and_labels_are_those_of_predict_for_every_model(reviews):
    scorer = BatchScorer.load(MODELS_DIR, ["all"])
    assert scorer.names == MODEL_NAMES or sorted(scorer.names) == MODEL_NAMES
    table = pa.Table.from_pylist([{**review, "problem": None} for review in reviews])
    scored = scorer.score_table(table)
    assert scored.column("problem").null_count == len(reviews)
    assert_same_as_predict(scored.drop_columns(["problem"]), {r["id"]: r["text"] for r in reviews}, scorer.names)


def test_the_models_are_named_as_predict_names_them():
    assert BatchScorer.load(MODELS_DIR, None).names == [Settings(model_dir=MODELS_DIR).default_model or
                                                        _default_model()]
    assert BatchScorer.load(MODELS_DIR, ["conv1d,bigram_bag", "conv1d"]).names == ["conv1d", "bigram_bag"]


def _default_model() -> str:
    with TestClient(create_app(Settings(model_dir=MODELS_DIR, access_log=False))) as client:
        return client.get("/models").json()["default"]


# ---- input formats


FORMAT_REVIEWS = [{"id": f"r{number}", "text": text} for number, text in enumerate([
    "A wonderful film, beautifully acted.", "Dull, slow and far too long.", "Not bad at all, I liked it.",
    'Quotes "inside", commas, and a\nsecond line.', "Ünïcödé téxt: a très bon film."])]


def _expected(ids: list[str]) -> list[tuple[str, str, None]]:
    return [(row_id, review["text"], None) for row_id, review in zip(ids, FORMAT_REVIEWS, strict=True)]


def rows_of(path: Path, **options) -> list[tuple]:
    source = open_source(path, **options)
    return [row for table in source.rows(block_rows=2) for row in zip(*table.to_pydict().values(), strict=True)]


def test_each_input_format_reads_the_same_reviews(tmp_path):
    ids = [review["id"] for review in FORMAT_REVIEWS]
    # JSONL, with and without ids
    assert rows_of(write_jsonl(tmp_path / "in.jsonl", FORMAT_REVIEWS)) == _expected(ids)
    no_ids = write_jsonl(tmp_path / "plain.ndjson", [{"text": review["text"]} for review in FORMAT_REVIEWS])
    assert rows_of(no_ids) == _expected([f"plain.ndjson:{line}" for line in range(1, 6)])
    # CSV (quoted fields with commas and a newline) and Parquet, with ids
    pa.csv.write_csv(pa.Table.from_pylist(FORMAT_REVIEWS), tmp_path / "in.csv")
    assert rows_of(tmp_path / "in.csv") == _expected(ids)
    pq.write_table(pa.Table.from_pylist(FORMAT_REVIEWS), tmp_path / "in.parquet")
    assert rows_of(tmp_path / "in.parquet") == _expected(ids)
    # CSV and Parquet without ids: <file>:<row>
    pa.csv.write_csv(pa.Table.from_pylist([{"text": r["text"]} for r in FORMAT_REVIEWS]), tmp_path / "plain.csv")
    assert rows_of(tmp_path / "plain.csv") == _expected([f"plain.csv:{row}" for row in range(1, 6)])
    # a folder of .txt files: the id is the file's name
    folder = tmp_path / "texts"
    folder.mkdir()
    for review in FORMAT_REVIEWS:
        (folder / f"{review['id']}.txt").write_text(review["text"], encoding="utf-8")
    assert rows_of(folder) == _expected([f"{row_id}.txt" for row_id in ids])
    # a folder of JSONL files reads as one input
    parts = tmp_path / "parts"
    parts.mkdir()
    write_jsonl(parts / "a.jsonl", FORMAT_REVIEWS[:2])
    write_jsonl(parts / "b.jsonl", FORMAT_REVIEWS[2:])
    (parts / "_SUCCESS").write_text("")
    assert rows_of(parts) == _expected(ids)


def test_the_aclimdb_archive_is_read_as_the_training_data_reader_reads_it(tmp_path):
    folders = [("train", "pos"), ("train", "neg"), ("test", "pos"), ("test", "neg"), ("test", "pos")]
    members = {f"{split}/{label}/{number}_{7 if label == 'pos' else 2}.txt": review["text"]
               for number, (review, (split, label)) in enumerate(zip(FORMAT_REVIEWS, folders, strict=True))}
    members["test/urls_pos.txt"] = "http://not-a-review"  # other files of the archive are not reviews
    archive = write_review_tarball(tmp_path / "aclImdb_v1_labeled.tar.gz", members)
    everything = rows_of(archive)
    assert [row[0] for row in everything] == [name for name in members if name != "test/urls_pos.txt"]
    assert [row[1] for row in everything] == [review["text"] for review in FORMAT_REVIEWS]
    assert open_source(archive).count() == 5
    test_only = rows_of(archive, split="test")
    assert [row[0] for row in test_only] == ["test/pos/2_7.txt", "test/neg/3_2.txt", "test/pos/4_7.txt"]
    assert open_source(archive, split="test").count() == 3


# ---- bad rows


def test_bad_rows_are_reported_with_their_ids_and_reasons(tmp_path):
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(b"".join([
        b'{"id": "ok", "text": "A fine film."}\n',
        b'{"id": "no-text"}\n',
        b'{"id": "null-text", "text": null}\n',
        b'{"id": 7, "text": 5}\n',
        b'{"id": "blank", "text": "   "}\n',
        b'not json\n',
        b'["a list"]\n',
        b'{"id": {"nested": 1}, "text": "an id that is not an id"}\n',
        b'{"id": "latin-1", "text": "caf\xe9"}\n',
        b"\n",  # a blank line is no row
    ]))
    csv = tmp_path / "bad.csv"
    csv.write_text('id,text\nok,"Fine."\nempty,\nextra,"a",b\n', encoding="utf-8")
    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["ok", "null"], "text": ["Fine.", None]}), parquet)
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numbers)
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "good.txt").write_text("Good.", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))

    scorer = BatchScorer.load(MODELS_DIR, ["conv1d"])
    problems = {}
    for path in (jsonl, csv, parquet, numbers, folder):
        for table in open_source(path).rows():
            scored = scorer.score_table(table)
            for row in scored.to_pylist():
                problems[row["id"]] = row["problem"]
                scored_row = row["score_conv1d"] is not None
                assert (row["problem"] is None) == scored_row == (row["label_conv1d"] is not None)
    assert problems == {
        "ok": None,
        "no-text": "no 'text' field",
        "null-text": "no text (null)",
        "7": "text is not a string (int)",
        "blank": "text is empty or whitespace only",
        "bad.jsonl:6": "line 6 is not valid JSON (Expecting value: line 1 column 1 (char 0))",
        "bad.jsonl:7": "line 7 is not a JSON object (list)",
        "bad.jsonl:8": "id is not a string or an integer (dict)",
        "bad.jsonl:9": "line 9 is not UTF-8 (invalid continuation byte at byte 30)",
        "empty": "text is empty or whitespace only",
        "bad.csv:4": "line 4 is not a CSV row of the header's 2 columns (has 3)",
        "null": "no text (null)",
        "numbers.parquet:1": "text is not a string (int64)",
        "numbers.parquet:2": "text is not a string (int64)",
        "good.txt": None,
        "latin1.txt": "not UTF-8 text (unexpected end of data at byte 3)",
    }


def test_a_review_over_the_services_length_limit_is_a_bad_row(monkeypatch):
    monkeypatch.setenv("SENTIMENT_MAX_REVIEW_CHARS", "20")
    scorer = BatchScorer.load(MODELS_DIR, ["conv1d"])
    assert scorer.problem_of("x" * 20) is None
    assert scorer.problem_of("x" * 21) == ("text has 21 characters, at most 20 are accepted "
                                           "(SENTIMENT_MAX_REVIEW_CHARS)")


def test_the_input_is_cut_into_a_block_per_batch_so_every_actor_gets_some(tmp_path):
    # one file is one read task: without a block count Ray Data hands its rows to a single actor call
    source = open_source(write_jsonl(tmp_path / "reviews.jsonl", [{"id": str(i), "text": "fine"} for i in range(302)]))
    assert read_blocks(source, 302, 16) == 19
    counted: Future = Future()
    counted.set_result(302)
    assert read_blocks(source, counted, 100) == 4
    # a CSV's rows are not counted: its size stands in, and never fewer blocks than read tasks
    csv = tmp_path / "reviews.csv"
    csv.write_text("id,text\n" + "".join(f"{i},{'word ' * 259}\n" for i in range(200)))
    assert read_blocks(open_source(csv), None, 10) == -(-csv.stat().st_size // CSV_BYTES_PER_ROW // 10)
    assert read_blocks(source, 1, 256) == len(source.chunks()) == 1


def test_the_progress_line_shows_rows_per_second_and_the_eta():
    from bulk.pipeline import Progress

    stream = io.StringIO()
    counting = Future()
    progress = Progress(counting, stream=stream, every=0)
    progress.update(10, 0)  # the input is still being counted: no ETA yet
    counting.set_result(100)
    progress.started -= 2  # two seconds in
    progress.update(40, 1)
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(r"bulk: 10 rows, \d+ rows/s, 0 bad, 0 s", first)
    assert re.fullmatch(r"bulk: 40/100 rows \(40 %\), 20 rows/s, ETA 3 s, 1 bad, 2 s", second)


# ---- the command line's errors: one line, no traceback, nothing written


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "bulk", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=RAY_ENV)


def test_an_existing_output_is_not_overwritten_without_overwrite(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", FORMAT_REVIEWS)
    output = tmp_path / "out.parquet"
    output.write_bytes(b"precious")
    result = run_cli("--input", str(source), "--output", str(output))
    assert result.returncode == 2
    assert result.stderr == f"error: {output} already exists; pass --overwrite to replace it, or choose another " \
                            "--output\n"
    assert output.read_bytes() == b"precious"
    # nor its bad-rows file; with --overwrite both may be replaced, but never a folder of other files
    output.unlink()
    bad_rows_path(output).write_text("")
    with pytest.raises(Exception, match="out.parquet.bad_rows.jsonl already exists"):
        check_output(output, overwrite=False)
    assert check_output(output, overwrite=True) == output
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.md").write_text("mine")
    with pytest.raises(Exception, match="files other than Parquet parts"):
        check_output(tmp_path / "folder", overwrite=True)


def test_a_folder_output_is_written_in_parts_that_read_back_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(output_module, "ROWS_PER_GROUP", 100)
    writer = output_module.ParquetOutput(tmp_path / "scores", output_schema(["conv1d"]), rows_per_part=200)
    for start in range(0, 360, 30):
        ids = [str(number) for number in range(start, start + 30)]
        writer.write(pa.table({"id": ids, "score_conv1d": [0.75] * 30, "label_conv1d": ["positive"] * 30,
                               "problem": [None] * 30}))
    writer.write_bad(["bad"], ["no text (null)"])
    assert not (tmp_path / "scores").exists()  # nothing in place until the run commits
    writer.commit()
    parts = sorted(path.name for path in (tmp_path / "scores").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet"]
    table = pq.read_table(tmp_path / "scores")
    assert sorted(map(int, table.column("id").to_pylist())) == list(range(360))
    assert table.schema == output_schema(["conv1d"])
    assert json.loads(bad_rows_path(tmp_path / "scores").read_text()) == {"id": "bad", "reason": "no text (null)"}
    assert [path.name for path in tmp_path.iterdir() if "partial" in path.name] == []


@pytest.mark.parametrize(("make_input", "options", "message"), [
    (lambda tmp: tmp / "missing.jsonl", [], "input {tmp}/missing.jsonl does not exist"),
    (lambda tmp: _file(tmp / "reviews.xlsx"), [], "cannot read {tmp}/reviews.xlsx: unknown format '.xlsx'; inputs "
     "are .jsonl, .csv, .parquet, a folder of .txt files or the aclImdb .tar.gz archive"),
    (lambda tmp: _file(tmp / "in.csv", "id,review\n1,Good.\n"), [], "{tmp}/in.csv has no 'text' column "
     "(columns: id, review)"),
    (lambda tmp: _file(tmp / "aclImdb_v1.tar.gz", "not a tar"), [], "{tmp}/aclImdb_v1.tar.gz is not a readable tar "
     "archive; expected the aclImdb archive (aclImdb_v1_labeled.tar.gz or aclImdb_v1.tar.gz)"),
    (lambda tmp: write_review_tarball(tmp / "aclImdb_v1.tar.gz", {"train/pos/1_9.txt": "Good."}), ["--split", "test"],
     "{tmp}/aclImdb_v1.tar.gz has no test reviews in the aclImdb layout (aclImdb/{{train,test}}/{{pos,neg}}/"
     "{{id}}_{{rating}}.txt)"),
    (lambda tmp: _file(tmp / "in.jsonl", "{}\n"), ["--split", "test"], "--split applies to the aclImdb archive "
     "only; {tmp}/in.jsonl is jsonl"),
    (lambda tmp: _file(tmp / "in.jsonl", "{}\n"), ["--models", "conv1d", "nope"], "unknown model 'nope'; valid "
     "names: " + ", ".join(MODEL_NAMES) + " (or 'all')"),
    (lambda tmp: tmp, [], "folder {tmp} has no .txt, .jsonl, .csv or .parquet files"),
])
def test_bad_inputs_and_unknown_models_fail_in_one_line(tmp_path, capsys, make_input, options, message):
    output = tmp_path / "out.parquet"
    code = main(["--input", str(make_input(tmp_path)), "--output", str(output), *options])
    assert code == 2
    assert capsys.readouterr().err == f"error: {message.format(tmp=tmp_path)}\n"
    assert not output.exists() and not bad_rows_path(output).exists()


def test_the_command_line_shows_no_traceback_for_a_bad_input(tmp_path):
    result = run_cli("--input", str(tmp_path / "nowhere.jsonl"), "--output", str(tmp_path / "out"))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"error: input {tmp_path}/nowhere.jsonl "
                                                                        "does not exist\n")


def _file(path: Path, text: str = "") -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- Ray: a real two-node cluster on this machine, and Ray started by the tool


class LocalCluster:
    """A head and a second node started with ``ray start --block`` on this machine, each in a process group of its
    own, with its own ports and temp dir; ``stop`` ends exactly those process groups."""

    START_TIMEOUT = 120  # seconds for both nodes to join, on a loaded 2-core machine

    def __init__(self, root: Path):
        self.root = root
        self.ip = ray.util.get_node_ip_address()
        self.port = free_port()
        self.address = f"{self.ip}:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        ports = ["--node-manager-port", "--object-manager-port", "--metrics-export-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port"]
        command = [RAY, "start", *args, "--num-cpus", "1", "--resources", json.dumps({f"bulk_test_{name}": 1}),
                   "--temp-dir", str(self.root / name), "--disable-usage-stats", "--block",
                   *(item for flag in ports for item in (flag, str(free_port())))]
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=REPO_ROOT, env=RAY_ENV)
        log.close()
        self.processes.append(process)
        return process

    def start(self) -> LocalCluster:
        deadline = time.monotonic() + self.START_TIMEOUT
        self._start("head", "--head", "--port", str(self.port), "--ray-client-server-port", str(free_port()),
                    "--dashboard-port", str(free_port()), "--include-dashboard", "false")
        self._wait_for("head", deadline)
        self._start("worker", "--address", self.address)
        self._wait_for("worker", deadline)
        while self.nodes() < 2:
            assert time.monotonic() < deadline, f"the second node did not join within {self.START_TIMEOUT} s"
            time.sleep(1)
        return self

    def _wait_for(self, name: str, deadline: float) -> None:
        log = self.root / f"{name}.log"
        while "Ray runtime started" not in log.read_text(errors="replace"):
            process = self.processes[-1]
            assert process.poll() is None, f"ray start ({name}) exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"ray start ({name}) not up within {self.START_TIMEOUT} s"
            time.sleep(0.5)

    def nodes(self) -> int:
        status = subprocess.run([RAY, "status", "--address", self.address], capture_output=True, text=True,
                                timeout=60, env=RAY_ENV)
        return status.stdout.count("bulk_test_") if status.returncode == 0 else 0

    def node_ids(self) -> dict[str, str]:
        """The node id of each node, as its raylet was started."""
        ids = {}
        for name in ("head", "worker"):
            (session,) = (self.root / name).glob("session_2*")
            ids[name] = (session / "logs" / "raylet.out").read_text(errors="replace").split("node_id=", 1)[1][:56]
        return ids

    def stop(self) -> list[int]:
        """SIGTERM to each ``ray start --block`` (it stops its node's processes, the head's can take 30 s), then after
        at most 10 s SIGKILL to whatever is left of the processes it started: its process group, and the Ray workers
        (children of the raylet, each in a session of its own) that have not exited yet. Returns the ids of any
        process still running after that (none)."""
        started = descendants({process.pid for process in self.processes})
        for process in reversed(self.processes):
            process.terminate()
        deadline = time.monotonic() + 10
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for pid, start_time in started.items():
            if _start_time(pid) == start_time:  # still that process, not a new one with a reused id
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        return [pid for pid, start_time in started.items()
                if _start_time(pid) == start_time and (_stat(pid) or ["Z"])[0] != "Z"]  # the ones still running


def _stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ... (field 22: start time)


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None


def descendants(roots: set[int]) -> dict[int, str]:
    """Every process below ``roots`` (by parent id, from /proc), with its start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = {}, list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found and (start := _start_time(child)) is not None:
                found[child] = start
                stack.append(child)
    return found


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="bulk-ray-", dir="/tmp"))  # short: Ray's socket paths are length-limited
    local = LocalCluster(root)
    started = time.monotonic()
    try:
        local.start()
        print(f"\ntwo-node Ray cluster at {local.address} up in {time.monotonic() - started:.0f} s")
        yield local
    finally:
        left = local.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes still running after the cluster was stopped: {left}"


def test_a_two_node_cluster_scores_a_file_on_both_nodes(cluster, reviews, tmp_path):
    records = [*reviews, {"id": "no-text"}, {"id": "not-a-string", "text": ["a", "list"]}]
    source = write_jsonl(tmp_path / "reviews.jsonl", records)
    output, stats = tmp_path / "scores", tmp_path / "stats.json"
    result = run_cli("--input", str(source), "--output", str(output), "--models", *CLUSTER_MODELS,
                     "--address", cluster.address, "--batch-size", "16", "--concurrency", "2", "--stats", str(stats))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(stats.read_text())
    print(f"\ntwo-node run: {result.stderr.strip().splitlines()[-1]}\nnode ids: {cluster.node_ids()}")
    # both nodes scored some of the batches (the node id each actor recorded on its batches)
    assert set(summary["nodes"]) == set(cluster.node_ids().values()), summary["nodes"]
    assert all(batches >= 1 for batches in summary["batches_per_node"].values())
    assert (summary["rows"], summary["scored"], summary["bad_rows"]) == (302, 300, 2)
    # the scores are /predict's, in a folder of Parquet parts; the bad rows are in their file with the reasons
    table = pq.read_table(output)
    assert table.column_names == ["id", *(f"{kind}_{model}" for model in CLUSTER_MODELS for kind in ("score", "label"))]
    assert sorted(table.column("id").to_pylist()) == sorted(review["id"] for review in reviews)
    assert_same_as_predict(table, {review["id"]: review["text"] for review in reviews}, CLUSTER_MODELS)
    bad = [json.loads(line) for line in bad_rows_path(output).read_text().splitlines()]
    assert sorted(bad, key=lambda row: row["id"]) == [{"id": "no-text", "reason": "no 'text' field"},
                                                      {"id": "not-a-string", "reason": "text is not a string (list)"}]


def test_without_an_address_it_starts_ray_by_itself_and_scores_the_archive(sample_archive, tmp_path):
    output = tmp_path / "test.parquet"
    result = run_cli("--input", str(sample_archive), "--split", "test", "--output", str(output), "--models", "conv1d",
                     "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bulk: 200 reviews scored with conv1d" in result.stderr
    table = pq.read_table(output)
    assert table.num_rows == 200 and all(row_id.startswith("test/") for row_id in table.column("id").to_pylist())
    assert bad_rows_path(output).read_text() == ""
    # the ids lead back to the texts: the same scores as /predict
    texts = {}
    with tarfile.open(sample_archive) as archive:
        for member in archive:
            if member.isfile() and member.name.startswith("aclImdb/test/"):
                texts[member.name.removeprefix("aclImdb/")] = archive.extractfile(member).read().decode()
    assert_same_as_predict(table, texts, ["conv1d"])
