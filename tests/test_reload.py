"""Reloading the model folder without a restart (POST /admin/reload, SIGHUP, polling): an imported course model
served after a reload by a real server, a replacement under load with no failed request, a corrupt file, a
removed model, the setting that turns the endpoint off, API keys, and every worker of several reloading."""

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata
from service.app import create_app
from service.config import Settings
from service.repository import FOLDER
from service.routes import admin
from service.scoring import ScoringCore
from tests.conftest import MODELS_DIR, read_sample_reviews, running_server, wait_until_ready
from tests.test_import_model import course_model, run_import, sigmoid

REVIEWS = [review["text"] for review in read_sample_reviews()[:24]]
SERVED = ("conv1d.onnx", "conv1d.json", "vocab_10000.json")  # one committed model: the servers start quickly


@pytest.fixture(autouse=True)
def no_imdb_data(tmp_path, monkeypatch):
    monkeypatch.setenv("IMDB_DATA_DIR", str(tmp_path / "no-data"))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in SERVED:
        shutil.copy(MODELS_DIR / name, folder / name)
    return folder


def stage(tmp_path: Path, seed: int, name: str = "course", suffix: str = ".h5") -> tuple[Path, object]:
    """An imported course model in a folder of its own (not served); the folder and the Keras model."""
    folder = tmp_path / f"staged-{name}-{seed}"
    model = course_model(seed=seed)
    model.save(tmp_path / f"{name}-{seed}{suffix}")
    assert run_import(tmp_path / f"{name}-{seed}{suffix}", folder, name=name) == 0
    return folder, model


def install(staged: Path, model_dir: Path, name: str = "course") -> None:
    """The staged files into the served folder as an import writes them: each renamed into place, the metadata
    last."""
    metadata = json.loads((staged / f"{name}.json").read_text())
    for file in (metadata["vocabulary"]["file"], f"{name}.onnx", f"{name}.json"):
        shutil.copy(staged / file, model_dir / f".{file}.tmp")
        os.replace(model_dir / f".{file}.tmp", model_dir / file)


def expected_scores(model, model_dir: Path, reviews: list[str], name: str = "course") -> np.ndarray:
    """sigmoid(Keras output) on the reviews as the served tokenizer reads them."""
    tokens = load_tokenizer(read_metadata(model_dir / f"{name}.json"), model_dir).encode_batch(reviews)
    return sigmoid(model.predict(tokens, verbose=0).reshape(-1).astype(np.float64))


def scores(response: httpx.Response) -> list[float]:
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    return [prediction["score"] for prediction in result["predictions"]]


def reload(client, **headers) -> httpx.Response:
    return client.post("/admin/reload", headers=headers)


# ---- a real server

@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_an_imported_course_model_is_served_after_a_reload(tmp_path, model_dir, suffix):
    with running_server(model_dir=str(model_dir), access_log="false") as (base_url, _), \
            httpx.Client(base_url=base_url, timeout=30) as client:
        model = course_model(seed=3)
        model.save(tmp_path / f"my_model{suffix}")
        assert run_import(tmp_path / f"my_model{suffix}", model_dir) == 0  # straight into the served folder
        assert client.post("/predict?model=course", json={"reviews": REVIEWS}).status_code == 422  # not yet

        answer = reload(client)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        version = read_metadata(model_dir / "course.json").version
        assert body["reloaded"] is True and (body["workers"], body["workers_reloaded"]) == (1, 1)
        assert body["added"] == ["course"] and body["unchanged"] == ["conv1d"] and body["failed"] == {}
        assert body["models"]["course"] == version

        served = scores(client.post("/predict?model=course", json={"reviews": REVIEWS}))
        assert np.abs(np.array(served) - expected_scores(model, model_dir, REVIEWS)).max() <= 1e-5
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert listed["course"]["version"] == version and listed["course"]["num_words"] == 300
        assert client.get("/readyz").json() == {"ready": True, "models": ["conv1d", "course"], "failed": {}}
        assert client.get("/v2/models/course").status_code == 200
        infer = client.post("/v2/models/course/infer", json={"inputs": [
            {"name": "text", "shape": [1], "datatype": "BYTES", "data": [REVIEWS[0]]}]})
        assert infer.status_code == 200 and abs(infer.json()["outputs"][0]["data"][0] - served[0]) <= 1e-6
        assert "course" in json.dumps(client.get("/openapi.json").json()["paths"]["/predict"])


def test_a_replacement_under_load_fails_no_request(tmp_path, model_dir):
    (first, _), (second, _) = stage(tmp_path, seed=4), stage(tmp_path, seed=5)
    versions = {read_metadata(folder / "course.json").version: folder for folder in (first, second)}
    old, new = (read_metadata(folder / "course.json").version for folder in (first, second))
    batch = REVIEWS[:8]
    install(first, model_dir)
    with running_server(model_dir=str(model_dir), access_log="false") as (base_url, _):
        expected = {}
        for version, folder in versions.items():  # what each version answers, from its own files
            with TestClient(create_app(Settings(model_dir=folder, access_log=False))) as client:
                wait_until_ready(client)
                expected[version] = scores(client.post("/predict?model=course", json={"reviews": batch}))
        answers, stop = [], threading.Event()
        reloaded_at = []

        def drive() -> None:
            with httpx.Client(base_url=base_url, timeout=30) as client:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        response = client.post("/predict?model=course,conv1d", json={"reviews": batch})
                    except httpx.HTTPError as error:  # a failed request is what this test is about
                        answers.append((started, repr(error), None, None))
                        continue
                    body = response.json()
                    answers.append((started, response.status_code, body["results"][0]["version"] if
                                    response.status_code == 200 else body,
                                    [p["score"] for p in body["results"][0]["predictions"]]
                                    if response.status_code == 200 else None))

        drivers = [threading.Thread(target=drive) for _ in range(4)]
        for driver in drivers:
            driver.start()
        reloads = []
        try:
            time.sleep(1.0)
            for staged in (second, first, second):  # replaced three times: back and forth
                install(staged, model_dir)
                with httpx.Client(base_url=base_url, timeout=60) as client:
                    reloads.append(reload(client))
                reloaded_at.append(time.monotonic())
                time.sleep(0.7)
        finally:
            stop.set()
            for driver in drivers:
                driver.join(timeout=60)
    for answer in reloads:
        assert answer.status_code == 200 and answer.json()["replaced"] == ["course"], answer.text
        assert answer.json()["unchanged"] == ["conv1d"]
    failures = [a for a in answers if a[1] != 200]
    assert not failures, failures[:5]
    seen = [version for _, _, version, _ in answers]
    assert {old, new} <= set(seen) <= {old, new}, set(seen)
    for _, _, version, answered in answers:  # each answer comes whole from the version it names
        assert np.abs(np.array(answered) - expected[version]).max() <= 1e-6
    after = [version for started, _, version, _ in answers if started > reloaded_at[-1]]
    assert after and set(after) == {new}


def test_requests_queued_for_a_replaced_model_finish_on_its_old_session(tmp_path, model_dir):
    # Deterministic: the old model's batcher is made slow, so requests are in its queue and in its model call
    # when the reload swaps the new version in.
    (first, _), (second, _) = stage(tmp_path, seed=15), stage(tmp_path, seed=16)
    install(first, model_dir)
    settings = Settings(model_dir=model_dir, batch_max_size=2)

    async def scenario():
        core = ScoringCore.load(settings)
        core.warm_up()
        old_version = core.repository.models["course"].version
        batcher = core.batchers["course"]
        predict = batcher._predict

        def slow(tokens):
            time.sleep(0.2)
            return predict(tokens)

        batcher._predict = slow
        expected = (await core.score(REVIEWS[:2], ["course"])).results[0].scores
        in_flight = [asyncio.ensure_future(core.score(REVIEWS[:2], ["course"])) for _ in range(4)]
        await asyncio.sleep(0.05)  # the first batch is in the model call, the others queued
        install(second, model_dir)
        rescan = await core.reload(settings)
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        await core.close()
        return old_version, expected, rescan, results

    old_version, expected, rescan, results = asyncio.run(scenario())
    assert rescan.replaced == ["course"]
    for result in results:
        assert not isinstance(result, BaseException), result
        assert result.results[0].version == old_version and result.results[0].scores == expected


def test_sighup_reloads_the_server(tmp_path, model_dir):
    staged, _ = stage(tmp_path, seed=6)
    with running_server(model_dir=str(model_dir), access_log="false") as (base_url, process), \
            httpx.Client(base_url=base_url, timeout=10) as client:
        install(staged, model_dir)
        os.kill(process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "course" not in client.get("/readyz").json()["models"]:
            assert time.monotonic() < deadline, "SIGHUP did not reload the models"
            time.sleep(0.1)
        assert process.poll() is None
        assert client.post("/predict?model=course", json={"reviews": REVIEWS[:2]}).status_code == 200


def names_on_fresh_connections(base_url: str, count: int = 24) -> list[set[str]]:
    """The models /models lists, over ``count`` new connections (the kernel spreads them over the workers)."""
    listed = []
    for _ in range(count):
        with httpx.Client(base_url=base_url, timeout=10) as client:
            listed.append({model["name"] for model in client.get("/models").json()["models"]})
    return listed


def test_every_worker_reloads_and_the_answer_counts_them(tmp_path, model_dir):
    staged, _ = stage(tmp_path, seed=7)
    with running_server(model_dir=str(model_dir), workers="2", access_log="false") as (base_url, process):
        assert all(names == {"conv1d"} for names in names_on_fresh_connections(base_url))
        install(staged, model_dir)
        with httpx.Client(base_url=base_url, timeout=60) as client:
            answer = reload(client)
        body = answer.json()
        assert answer.status_code == 200, answer.text
        assert (body["workers"], body["workers_reloaded"], body["reloaded"]) == (2, 2, True)
        pids = {outcome["pid"] for outcome in body["worker_outcomes"]}
        assert len(pids) == 2 and all(outcome["reloaded"] and "course" in outcome["models"]
                                      for outcome in body["worker_outcomes"])
        assert all(names == {"conv1d", "course"} for names in names_on_fresh_connections(base_url))

        # SIGHUP to the supervisor reloads every worker too.
        for file in ("course.onnx", "course.json"):
            (model_dir / file).unlink()
        os.kill(process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while any("course" in names for names in names_on_fresh_connections(base_url)):
            assert time.monotonic() < deadline, "a worker still serves the removed model"
            time.sleep(0.2)
        assert process.poll() is None


# ---- the app in-process

@contextlib.contextmanager
def app_client(model_dir: Path, **settings):
    with TestClient(create_app(Settings(model_dir=model_dir, access_log=False, **settings))) as client:
        wait_until_ready(client)
        yield client


def test_a_corrupt_file_keeps_the_served_set_and_says_why(tmp_path, model_dir):
    staged, _ = stage(tmp_path, seed=8)
    install(staged, model_dir)
    with app_client(model_dir) as client:
        before = scores(client.post("/predict?model=course", json={"reviews": REVIEWS[:3]}))
        version = read_metadata(model_dir / "course.json").version
        good = (model_dir / "course.onnx").read_bytes()
        # A corrupt ONNX file whose metadata carries its checksum: only loading it can tell.
        corrupt = b"not an onnx graph" * 100
        metadata = json.loads((model_dir / "course.json").read_text())
        (model_dir / "course.onnx").write_bytes(corrupt)
        (model_dir / "course.json").write_text(json.dumps({**metadata,
                                                           "onnx_sha256": hashlib.sha256(corrupt).hexdigest()}))
        (model_dir / "newcomer.onnx").write_bytes(good)  # and a new model without its metadata

        answer = reload(client)
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["reloaded"] is False and body["workers_reloaded"] == 0
        assert "course.onnx: not a loadable ONNX model" in body["failed"]["course"]
        assert "newcomer.json: metadata file for newcomer.onnx is missing" in body["failed"]["newcomer"]
        assert {(d["type"], tuple(d["loc"])) for d in body["detail"]} == {
            ("reload_refused", ("model", "course")), ("reload_refused", ("model", "newcomer"))}
        assert all(d["msg"].endswith("the served models are unchanged") for d in body["detail"])
        assert body["models"] == {"conv1d": read_metadata(model_dir / "conv1d.json").version, "course": version}

        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["models"] == ["conv1d", "course"]
        assert set(ready.json()["failed"]) == {"course", "newcomer"}
        assert scores(client.post("/predict?model=course", json={"reviews": REVIEWS[:3]})) == before

        (model_dir / "course.onnx").write_bytes(good)
        (model_dir / "course.json").write_text(json.dumps(metadata))
        (model_dir / "newcomer.onnx").unlink()
        answer = reload(client)
        assert answer.status_code == 200 and answer.json()["unchanged"] == ["conv1d", "course"], answer.text
        assert client.get("/readyz").json()["failed"] == {}


def test_with_skip_broken_models_a_reload_takes_the_healthy_files(tmp_path, model_dir):
    (first, _), (second, _) = stage(tmp_path, seed=9), stage(tmp_path, seed=10, name="other")
    install(first, model_dir)
    with app_client(model_dir, skip_broken_models=True) as client:
        version = read_metadata(model_dir / "course.json").version
        install(second, model_dir, name="other")
        (model_dir / "course.onnx").write_bytes(b"broken")  # its metadata no longer matches
        answer = reload(client)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["added"] == ["other"] and "sha256 does not match" in body["failed"]["course"]
        assert body["models"]["course"] == version  # the served version stays
        assert set(client.get("/readyz").json()["failed"]) == {"course"}


def test_a_removed_model_goes_away(tmp_path, model_dir):
    staged, _ = stage(tmp_path, seed=11)
    install(staged, model_dir)
    with app_client(model_dir) as client:
        assert "course" in client.get("/readyz").json()["models"]
        (model_dir / "course.onnx").unlink()
        answer = reload(client)
        assert answer.status_code == 200 and answer.json()["removed"] == ["course"], answer.text
        assert [m["name"] for m in client.get("/models").json()["models"]] == ["conv1d"]
        response = client.post("/predict?model=course", json={"reviews": REVIEWS[:1]})
        assert response.status_code == 422 and "unknown model 'course'" in response.text
        assert client.get("/v2/models/course").status_code == 404
        assert "course" not in json.dumps(client.get("/openapi.json").json()["paths"]["/predict"])


def test_a_folder_without_models_is_refused(model_dir):
    with app_client(model_dir) as client:
        (model_dir / "conv1d.onnx").rename(model_dir / "conv1d.onnx.away")
        answer = reload(client)
        assert answer.status_code == 409 and "has no *.onnx files" in answer.json()["failed"][FOLDER]
        assert answer.json()["detail"][0]["loc"] == []
        assert client.post("/predict?model=conv1d", json={"reviews": REVIEWS[:1]}).status_code == 200


def test_a_reload_of_an_unchanged_folder_keeps_everything(model_dir):
    with app_client(model_dir) as client:
        core = client.app.state.core
        batcher, model = core.batchers["conv1d"], core.repository.models["conv1d"]
        (model_dir / "conv1d.json").touch()  # touched, not changed
        answer = reload(client)
        assert answer.status_code == 200 and answer.json()["unchanged"] == ["conv1d"], answer.text
        assert core.batchers["conv1d"] is batcher and core.repository.models["conv1d"] is model


def test_reload_turned_off_by_the_setting_answers_404(model_dir):
    with app_client(model_dir, admin_reload=False) as client:
        answer = reload(client)
        assert answer.status_code == 404 and answer.json()["detail"][0]["type"] == "not_found"
        assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


def test_reload_needs_an_api_key_when_keys_are_set(model_dir):
    with app_client(model_dir, api_keys=["s3cret"]) as client:
        answer = reload(client)
        assert answer.status_code == 401 and answer.json()["detail"][0]["type"] == "unauthorized"
        assert reload(client, **{"X-API-Key": "wrong"}).status_code == 401
        assert reload(client, **{"X-API-Key": "s3cret"}).status_code == 200


def test_polling_reloads_a_changed_folder_once_it_has_settled(tmp_path, model_dir):
    staged, _ = stage(tmp_path, seed=12)
    with app_client(model_dir, reload_poll_seconds=0.1) as client:
        install(staged, model_dir)
        deadline = time.monotonic() + 10
        while "course" not in client.get("/readyz").json()["models"]:
            assert time.monotonic() < deadline, "polling did not pick up the new model"
            time.sleep(0.05)


def test_a_request_that_resolved_a_model_before_a_swap_is_answered_by_that_model(tmp_path, model_dir):
    (first, _), (second, _) = stage(tmp_path, seed=13), stage(tmp_path, seed=14)
    install(first, model_dir)
    settings = Settings(model_dir=model_dir)

    async def scenario():
        core = ScoringCore.load(settings)
        core.warm_up()
        (old,) = core.resolve(["course"])
        old_batcher = core.batchers["course"]
        before = (await core.score_with([old], REVIEWS[:4])).results[0]
        install(second, model_dir)
        rescan = await core.reload(settings)
        assert rescan.replaced == ["course"] and core.batchers["course"] is not old_batcher
        late = (await core.score_with([old], REVIEWS[:4])).results[0]  # resolved before the swap
        now = (await core.score(REVIEWS[:4], ["course"])).results[0]
        explained = await core.explain_with(old, REVIEWS[:1])
        await core.close()
        return before, late, now, explained

    before, late, now, explained = asyncio.run(scenario())
    assert late.version == before.version and late.scores == before.scores
    assert now.version == read_metadata(second / "course.json").version != before.version
    assert explained.version == before.version and explained.explanations[0].score == pytest.approx(
        before.scores[0], abs=1e-6)


def test_a_worker_that_did_not_reload_is_not_counted_and_the_answer_says_so(model_dir):
    with app_client(model_dir) as client:
        reloaded = {"pid": os.getpid(), "reloaded": True, "default": "conv1d", "models": {"conv1d": "abc"},
                    "added": [], "replaced": [], "removed": [], "unchanged": ["conv1d"], "failed": {}}
        starting = {"pid": None, "reloaded": False, "error": "starting: it reads the model folder as it starts"}
        answer = admin.answer(client.app, [reloaded, starting], 2)
        body = json.loads(answer.body)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert (body["workers"], body["workers_reloaded"], body["reloaded"]) == (2, 1, False)
        assert body["detail"][0]["type"] == "reload_incomplete" and "1 of 2 workers did not reload" in \
            body["detail"][0]["msg"] and "starting" in body["detail"][0]["msg"]

        refused = {**reloaded, "pid": 7, "reloaded": False, "failed": {"x": "x.json: metadata is not valid JSON"}}
        answer = admin.answer(client.app, [reloaded, refused], 2)
        assert answer.status_code == 409 and json.loads(answer.body)["workers_reloaded"] == 1
        assert admin.answer(client.app, [reloaded, {**reloaded, "pid": 7}], 2).status_code == 200
