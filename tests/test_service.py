"""The service on the committed models, through FastAPI's TestClient."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.repository import ModelLoadError, ModelRepository
from tests import fakes
from tests.conftest import MODEL_NAMES, MODELS_DIR, REPO_ROOT, read_metadata, wait_until_ready

# Unambiguous real reviews from the IMDB test set (1 or 10 stars), found by their opening words.
CLEARLY_POSITIVE = [
    "This has got to be the best movie I've seen.",
    "Wonderful movie. Adult content.",
    "Captain Corelli's Mandolin is a beautiful film with a lovely cast",
    "Excellent story of lives that need repair",
]
CLEARLY_NEGATIVE = [
    "The best part of this DVD is the cover.",
    "I laughed so much when I saw this film I nearly soiled myself",
    "This movie was a complete waste of time.",
    "This was really the worst movie I've ever seen.",
]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR))) as test_client:
        wait_until_ready(test_client)
        yield test_client


@pytest.fixture
def make_client():
    """A client for an app with custom settings."""
    clients = []

    def make(**settings) -> TestClient:
        test_client = TestClient(create_app(Settings(model_dir=MODELS_DIR, **settings)))
        test_client.__enter__()
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


def predict(client, reviews, models=None):
    params = [("model", name) for name in models] if models else None
    return client.post("/predict", params=params, json={"reviews": reviews})


def find_review(imdb_dataset, opening: str) -> tuple[str, int]:
    test = imdb_dataset["test"]
    return next((text, rating) for text, rating in zip(test.texts, test.ratings, strict=True)
                if text.startswith(opening))


# ---- predictions


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_clearly_worded_real_reviews_get_the_right_label(client, imdb_dataset, model):
    positive = [find_review(imdb_dataset, opening) for opening in CLEARLY_POSITIVE]
    negative = [find_review(imdb_dataset, opening) for opening in CLEARLY_NEGATIVE]
    assert {rating for _, rating in positive} == {10} and {rating for _, rating in negative} == {1}
    response = predict(client, [text for text, _ in positive + negative], [model])
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["model"] == model
    labels = [p["label"] for p in result["predictions"]]
    assert labels == ["positive"] * len(positive) + ["negative"] * len(negative)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_extreme_ratings_are_mostly_right(client, imdb_dataset, model):
    test = imdb_dataset["test"]
    chosen = [i for i, rating in enumerate(test.ratings) if rating in (1, 10)]
    assert len(chosen) >= 100
    response = predict(client, [test.texts[i] for i in chosen], [model])
    scores = np.array([p["score"] for p in response.json()["results"][0]["predictions"]])
    truth = np.array([test.ratings[i] == 10 for i in chosen])
    assert np.mean((scores >= 0.5) == truth) >= 0.85


def test_scores_match_the_pipeline_tokenizer_and_onnxruntime(client, real_test_reviews):
    """200 real reviews: the service's scores equal tokenizer + onnxruntime run directly."""
    import onnxruntime as ort

    from artifacts.loading import load_tokenizer
    from artifacts.metadata import read_metadata as read_typed_metadata

    texts, _ = real_test_reviews
    response = predict(client, texts, MODEL_NAMES)
    assert response.status_code == 200
    for result in response.json()["results"]:
        tokenizer = load_tokenizer(read_typed_metadata(MODELS_DIR / f"{result['model']}.json"), MODELS_DIR)
        session = ort.InferenceSession(str(MODELS_DIR / f"{result['model']}.onnx"),
                                       providers=["CPUExecutionProvider"])
        expected = session.run(None, {"tokens": tokenizer.encode_batch(texts)})[0].reshape(-1)
        served = np.array([p["score"] for p in result["predictions"]], dtype=expected.dtype)  # calibrated: double
        np.testing.assert_array_equal(served, expected)


def test_label_follows_the_score(client, real_test_reviews):
    texts, _ = real_test_reviews
    for result in predict(client, texts[:50], MODEL_NAMES).json()["results"]:
        for prediction in result["predictions"]:
            assert 0 <= prediction["score"] <= 1
            assert prediction["label"] == ("positive" if prediction["score"] >= 0.5 else "negative")


def test_predictions_keep_the_input_order(client, real_test_reviews):
    texts, _ = real_test_reviews
    forward = predict(client, texts[:20], ["conv1d"]).json()["results"][0]["predictions"]
    backward = predict(client, texts[:20][::-1], ["conv1d"]).json()["results"][0]["predictions"]
    assert forward == backward[::-1]
    singles = [predict(client, [text], ["conv1d"]).json()["results"][0]["predictions"][0] for text in texts[:5]]
    assert singles == forward[:5]


def test_long_reviews_keep_their_last_500_tokens(client, imdb_dataset):
    tail_words = " ".join(imdb_dataset["test"].texts[0].split() * 10).split()
    tail = " ".join(word for word in tail_words if word.isalpha())  # no punctuation: one word, one token
    tail = " ".join(tail.split()[:500])
    long_review = "dreadful awful worst " * 300 + tail
    scores = [p["score"] for p in predict(client, [long_review, tail], ["conv1d"]).json()["results"][0]["predictions"]]
    assert scores[0] == scores[1]
    front = predict(client, ["dreadful awful worst " * 300], ["conv1d"]).json()["results"][0]["predictions"][0]
    assert front["score"] != scores[0]


# ---- how the review was read, and warnings


def test_each_prediction_says_how_many_words_the_model_read_and_knew(client):
    review = "A wonderful film, qqqzzz xxyyzz!"
    for result in predict(client, [review], ["all"]).json()["results"]:
        (prediction,) = result["predictions"]
        assert (prediction["words"], prediction["known_words"], prediction["truncated"]) == (5, 3, False)
        assert prediction["warnings"] == []


def test_a_review_without_a_known_word_is_flagged(client):
    reviews = ["Qqqzzx vvbbnn!", "!!! ???", "Schrecklich langweilig, überhaupt nicht witzig"]
    for result in predict(client, reviews, ["all"]).json()["results"]:
        for prediction in result["predictions"]:
            assert prediction["known_words"] == 0 and prediction["warnings"] == ["no_known_words"], result["model"]
            assert 0 <= prediction["score"] <= 1  # still scored: the model's answer to unknown words


def test_a_word_the_spelling_rule_reads_as_a_vocabulary_word_counts_as_known(client):
    # robust_bag reads "lustig" as "lusting" (one letter added), a word of its vocabulary; the Keras rule does not
    review = "Schrecklich langweilig, überhaupt nicht lustig"
    results = predict(client, [review], ["all"]).json()["results"]
    known = {result["model"]: result["predictions"][0]["known_words"] for result in results}
    assert known["robust_bag"] == 1 and known["bigram_bag"] == 0


def test_a_review_the_model_mostly_does_not_know_is_flagged(client):
    review = "Ein wunderbarer Film mit großartigen Schauspielern, die Geschichte ist fesselnd: great"
    for result in predict(client, [review], ["all"]).json()["results"]:
        (prediction,) = result["predictions"]
        assert prediction["known_words"] < prediction["words"] / 2, result["model"]
        assert prediction["warnings"] == ["few_known_words"], result["model"]


def test_a_long_review_is_flagged_as_truncated(client, imdb_dataset):
    long_review = " ".join(imdb_dataset["test"].texts[:8])
    (prediction,) = predict(client, [long_review], ["conv1d"]).json()["results"][0]["predictions"]
    assert prediction["words"] == 500 and prediction["truncated"] is True and prediction["warnings"] == ["truncated"]


def test_real_reviews_raise_no_warning_but_truncation(client, imdb_dataset):
    texts = imdb_dataset["test"].texts + imdb_dataset["train"].texts  # the whole committed sample
    for result in predict(client, texts[:256], ["all"]).json()["results"] + \
            predict(client, texts[256:], ["all"]).json()["results"]:
        warnings = {code for prediction in result["predictions"] for code in prediction["warnings"]}
        assert warnings <= {"truncated"}, result["model"]
        assert any(prediction["truncated"] for prediction in result["predictions"])


# ---- model choice and comparison


def test_default_model_is_the_one_with_the_best_robustness_score(client):
    models = client.get("/models").json()
    best = max(models["models"], key=lambda model: model["robustness_score"] or 0.0)["name"]
    assert predict(client, ["fine"]).json()["results"][0]["model"] == best
    assert models["default"] == best


def test_batch_size_can_be_set_per_model(monkeypatch):
    monkeypatch.setenv("SENTIMENT_BATCH_MAX_SIZES", '{"conv_lstm": 64}')
    settings = Settings(model_dir=MODELS_DIR, batch_max_size=8)
    with TestClient(create_app(settings)) as test_client:
        batchers = test_client.app.state.core.batchers
        assert batchers["conv_lstm"].max_batch_size == 64 and batchers["conv1d"].max_batch_size == 8


def test_a_batch_size_for_an_unknown_model_stops_start_up():
    with pytest.raises(ModelLoadError, match="SENTIMENT_BATCH_MAX_SIZES names models that do not exist: bert"):
        with TestClient(create_app(Settings(model_dir=MODELS_DIR, batch_max_sizes={"bert": 4}))):
            pass


def test_default_model_is_configurable(make_client):
    test_client = make_client(default_model="conv_lstm")
    assert predict(test_client, ["fine"]).json()["results"][0]["model"] == "conv_lstm"


def test_unknown_default_model_stops_start_up():
    with pytest.raises(Exception, match=f"default model 'bert'.*loaded: {', '.join(MODEL_NAMES)}"):
        with TestClient(create_app(Settings(model_dir=MODELS_DIR, default_model="bert"))):
            pass


@pytest.mark.parametrize("models, expected", [
    (["conv1d", "conv_lstm"], ["conv1d", "conv_lstm"]),
    (["conv_lstm", "conv1d"], ["conv_lstm", "conv1d"]),
    (["all"], MODEL_NAMES),
    (["conv1d", "conv1d"], ["conv1d"]),
])
def test_compare_mode_returns_models_in_the_order_asked(client, models, expected):
    body = predict(client, ["a wonderful film", "a terrible film"], models).json()
    assert [result["model"] for result in body["results"]] == expected
    if len(expected) > 1:
        assert body["agreement"]["models"] == expected
    else:
        assert body["agreement"] is None


def test_compare_mode_scores_equal_single_model_scores(client, real_test_reviews):
    texts, _ = real_test_reviews
    compared = predict(client, texts[:30], ["all"]).json()
    for result in compared["results"]:
        alone = predict(client, texts[:30], [result["model"]]).json()["results"][0]
        assert alone["predictions"] == result["predictions"]


def test_agreement_summary_counts_disagreements(client, real_test_reviews):
    texts, _ = real_test_reviews
    body = predict(client, texts, ["all"]).json()
    labels = [[p["label"] for p in result["predictions"]] for result in body["results"]]
    differing = [i for i, row in enumerate(zip(*labels, strict=True)) if len(set(row)) > 1]
    assert len(labels) == len(MODEL_NAMES) and differing  # the course models do disagree on some reviews
    assert body["agreement"]["disagreements"] == differing
    assert body["agreement"]["disagree"] == len(differing)
    assert body["agreement"]["agree"] == len(texts) - len(differing)


# ---- bad input: a clear 4xx, never a 500


def error_messages(response) -> str:
    return json.dumps(response.json()["detail"])


def test_unknown_model_lists_the_valid_names(client):
    response = predict(client, ["fine"], ["conv1d", "bert"])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "model"]
    assert f"unknown model 'bert'; valid names: {', '.join(MODEL_NAMES)} (or 'all')" in error_messages(response)


def test_empty_review_list_is_rejected(client):
    response = predict(client, [])
    assert response.status_code == 422
    assert "at least 1 item" in error_messages(response)


@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
def test_empty_or_whitespace_review_is_rejected(client, blank):
    response = predict(client, ["good film", blank])
    assert response.status_code == 422
    assert "reviews at positions [1] are empty or whitespace only" in error_messages(response)


@pytest.mark.parametrize("value", [3, None, ["nested"], {"text": "x"}, True])
def test_non_string_review_is_rejected(client, value):
    response = client.post("/predict", json={"reviews": ["good", value]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "reviews", 1]
    assert "valid string" in error_messages(response)


@pytest.mark.parametrize("body", [b"not json", b'{"reviews": ["unterminated', b"{}}"])
def test_body_that_is_not_json_is_rejected(client, body):
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "Invalid JSON" in error_messages(response)


@pytest.mark.parametrize("body", [b'{"reviews": ["caf\xe9"]}', b"\xff\xfe\x00"])
def test_body_that_is_not_utf8_is_rejected(client, body):
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "request body is not valid UTF-8 JSON" in error_messages(response)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonp"])
def test_body_not_sent_as_json_is_refused(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=b'{"reviews": ["a fine film"]}', headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in error_messages(response)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.api+json"])
def test_json_media_types_are_accepted(client, content_type):
    response = client.post("/predict", content=b'{"reviews": ["a fine film"]}', headers={"content-type": content_type})
    assert response.status_code == 200


@pytest.mark.parametrize("body", [[1, 2], "a review", 42, None])
def test_body_that_is_not_an_object_is_rejected(client, body):
    response = client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_missing_or_misnamed_field_is_rejected(client):
    response = client.post("/predict", json={"review": ["good"]})
    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json()["detail"]} == {("body", "reviews"), ("body", "review")}


def test_too_many_reviews(make_client):
    test_client = make_client(max_reviews=3)
    assert predict(test_client, ["ok"] * 3).status_code == 200
    response = predict(test_client, ["ok"] * 4)
    assert response.status_code == 422
    assert "too many reviews: 4, at most 3 per request (SENTIMENT_MAX_REVIEWS)" in error_messages(response)


def test_default_limit_is_256_reviews(client):
    assert predict(client, ["ok"] * 256).status_code == 200
    assert predict(client, ["ok"] * 257).status_code == 422


def test_review_too_long(make_client):
    test_client = make_client(max_review_chars=50)
    assert predict(test_client, ["x" * 50]).status_code == 200
    response = predict(test_client, ["fine", "x" * 51])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "reviews", 1]
    assert "review 1 has 51 characters, at most 50" in error_messages(response)


def test_default_limit_is_100000_characters(client):
    assert predict(client, ["good " * 20_000]).status_code == 200
    assert predict(client, ["good " * 20_000 + "x"]).status_code == 422


def test_body_over_the_size_limit_is_413(make_client):
    test_client = make_client(max_body_bytes=1_000)
    assert predict(test_client, ["x" * 900]).status_code == 200
    response = predict(test_client, ["x" * 1_000])
    assert response.status_code == 413
    assert "larger than 1000 bytes (SENTIMENT_MAX_BODY_BYTES)" in error_messages(response)


def test_streamed_body_over_the_size_limit_is_413(make_client):
    test_client = make_client(max_body_bytes=1_000)

    def chunks():
        yield b'{"reviews": ["'
        for _ in range(100):
            yield b"x" * 100
        yield b'"]}'

    response = test_client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


# ---- other endpoints


def test_models_lists_metadata(client):
    body = client.get("/models").json()
    assert [model["name"] for model in body["models"]] == MODEL_NAMES
    for model in body["models"]:
        metadata = read_metadata(model["name"])
        assert model["test_accuracy"] == metadata["test_metrics"]["accuracy"]
        assert model["parameters"] == metadata["parameters"]
        assert (model["max_len"], model["num_words"]) == (metadata["max_len"], metadata["num_words"])
        assert model["onnx_sha256"] == metadata["onnx_sha256"]
        assert model["default"] == (model["name"] == body["default"])


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "models": MODEL_NAMES, "failed": {}}


def test_not_ready_until_warm_up_is_done(monkeypatch):
    release = threading.Event()
    original = ModelRepository.warm_up

    def slow_warm_up(self):
        release.wait(10)
        original(self)

    monkeypatch.setattr(ModelRepository, "warm_up", slow_warm_up)
    with TestClient(create_app(Settings(model_dir=MODELS_DIR))) as test_client:
        response = test_client.get("/readyz")
        assert response.status_code == 503 and response.json()["ready"] is False
        assert test_client.get("/healthz").status_code == 200
        release.set()
        wait_until_ready(test_client)


def test_metrics_count_requests_reviews_and_batches(client):
    def sample(text: str, name: str) -> float:
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
        return values[0] if values else 0.0

    before = client.get("/metrics").text
    predict(client, ["good", "bad", "fine"], ["conv_lstm"])
    predict(client, ["good"], ["nope"])
    after = client.get("/metrics").text
    for name, increase in [
        ('sentiment_reviews_scored_total{model="conv_lstm"}', 3),
        ('sentiment_predict_requests_total{model="conv_lstm",status="ok"}', 1),
        ('sentiment_http_requests_total{method="POST",path="/predict",status="422"}', 1),
        ('sentiment_http_requests_total{method="POST",path="/predict",status="200"}', 1),
        ('sentiment_model_batch_size_count{model="conv_lstm"}', 1),
        ('sentiment_predict_duration_seconds_count{model="conv_lstm"}', 1),
    ]:
        assert sample(after, name) - sample(before, name) == increase, name


def test_openapi_documents_the_api_with_examples(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/models", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    predict_op = schema["paths"]["/predict"]["post"]
    assert {"413", "422", "503"} <= set(predict_op["responses"])
    assert "examples" in schema["components"]["schemas"]["PredictRequest"]
    assert predict_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"}
    (model,) = predict_op["parameters"]
    assert model["name"] == "model" and "all" in model["schema"]["anyOf"][0]["items"]["enum"]
    assert client.get("/docs").status_code == 200


def access_log_lines(test_client, capsys) -> list[dict]:
    test_client.app.state.access_log.flush()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_one_log_line_per_request_without_review_text(client, capsys):
    access_log_lines(client, capsys)  # earlier requests'
    secret = "a uniquely identifiable review text"
    predict(client, [secret, "another"], ["conv1d"])
    client.get("/models")
    lines = access_log_lines(client, capsys)
    assert [line["path"] for line in lines] == ["/predict", "/models"]
    assert lines[0]["models"] == ["conv1d"] and lines[0]["reviews"] == 2 and lines[0]["status"] == 200
    assert lines[0]["latency_ms"] > 0 and lines[0]["time"].endswith("Z")
    assert secret not in json.dumps(lines)


def test_review_text_is_logged_only_when_configured(make_client, capsys):
    test_client = make_client(log_reviews=True)
    predict(test_client, ["a uniquely identifiable review text"])
    assert access_log_lines(test_client, capsys)[-1]["texts"] == ["a uniquely identifiable review text"]


def test_access_log_can_be_turned_off(make_client, capsys):
    test_client = make_client(access_log=False)
    predict(test_client, ["fine"])
    assert test_client.app.state.access_log is None and capsys.readouterr().out == ""


def fake_client(*models, **settings) -> TestClient:
    """An app serving fake models (tests/fakes.py), injected through create_app's ``core``."""
    settings = Settings(model_dir=MODELS_DIR, **settings)
    return TestClient(create_app(settings, core=fakes.core(*models, settings=settings)))


def test_a_failing_model_gives_503_for_that_model_only():
    calls = []

    def broken(tokens):  # answers the warm-up, then fails
        calls.append(len(tokens))
        if len(calls) > 1:
            raise RuntimeError("onnxruntime exploded")
        return np.full(len(tokens), 0.5, dtype=np.float32)

    with fake_client(fakes.model("working"), fakes.model("broken", broken)) as test_client:
        wait_until_ready(test_client)
        response = predict(test_client, ["good"], ["broken"])
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["detail"] == [{
            "type": "model_unavailable", "loc": ["model", "broken"],
            "msg": "model broken failed to score the reviews (RuntimeError); other models are unaffected"}]
        assert predict(test_client, ["good"], ["working"]).status_code == 200
        assert test_client.get("/readyz").status_code == 200


def test_runtime_does_not_import_tensorflow_or_the_training_package():
    code = ("import sys; import service.app, service.workers, artifacts.loading; "
            "assert not any(name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'training') "
            "for name in sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_a_prediction_over_the_time_limit_gives_503():
    def slow(tokens):
        time.sleep(1.0)
        return np.full(len(tokens), 0.5, dtype=np.float32)

    with fake_client(fakes.model("slow", slow), request_timeout_seconds=0.2) as test_client:
        wait_until_ready(test_client)
        started = time.perf_counter()
        response = predict(test_client, ["good"])
        assert response.status_code == 503 and time.perf_counter() - started < 1.0
        assert "longer than 0.2 s (SENTIMENT_REQUEST_TIMEOUT_SECONDS)" in error_messages(response)


def test_invalid_scores_give_503_not_500():
    with fake_client(fakes.model("nan", lambda tokens: np.full(len(tokens), np.nan))) as test_client:
        wait_until_ready(test_client)
        response = predict(test_client, ["good"])
        assert response.status_code == 503 and "returned invalid scores" in error_messages(response)


def test_an_injected_core_serves_its_fake_model_with_its_version():
    model = fakes.model("fake", accuracy=0.75)
    with fake_client(model) as test_client:
        wait_until_ready(test_client)
        (result,) = predict(test_client, ["good film", "awful"]).json()["results"]
        assert result == {"model": "fake", "version": model.version, "predictions": [
            {"score": 0.5, "label": "positive", "words": 2, "known_words": 2, "truncated": False, "warnings": []},
            {"score": 0.0, "label": "negative", "words": 1, "known_words": 1, "truncated": False, "warnings": []}]}
        (info,) = test_client.get("/models").json()["models"]
        assert info["version"] == model.version and info["test_accuracy"] == 0.75 and info["onnx_bytes"] is None


@pytest.mark.parametrize("enabled", [False, True])
def test_fastapi_opentelemetry_follows_the_setting(enabled):
    app = create_app(Settings(model_dir=MODELS_DIR, opentelemetry=enabled))
    assert all(app._telemetry[signal] is enabled for signal in ("tracing", "metrics", "logs"))


def test_predict_behind_a_root_path_takes_fastapis_router_to_the_same_endpoint(client):
    with TestClient(create_app(Settings(model_dir=MODELS_DIR)), root_path="/sentiment") as prefixed:
        wait_until_ready(prefixed)
        # The path does not equal /predict, so DirectRoute passes the request on to FastAPI's router.
        routed = prefixed.post("/sentiment/predict", params={"model": "conv1d"}, json={"reviews": ["a fine film"]})
        invalid = prefixed.post("/sentiment/predict", json={"reviews": []})
    assert routed.status_code == 200
    assert routed.json() == predict(client, ["a fine film"], ["conv1d"]).json()
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "reviews"]


# ---- the fast path and the plain router answer alike


EQUIVALENCE_REQUESTS = [
    ("POST", "/predict?model=conv1d&model=bigram_bag", {"json": {"reviews": ["A fine film.", "Dull and long."]}}),
    ("POST", "/predict?model=conv1d,conv_lstm", {"json": {"reviews": ["Not bad at all."]}}),
    ("POST", "/predict?model=all", {"json": {"reviews": ["Great!"]}}),
    ("POST", "/predict", {"json": {"reviews": ["good"]}}),
    ("POST", "/predict?model=bert", {"json": {"reviews": ["good"]}}),
    ("POST", "/predict", {"json": {"reviews": []}}),
    ("POST", "/predict", {"json": {"reviews": ["fine", "  "]}}),
    ("POST", "/predict", {"json": {"reviews": ["fine", 3]}}),
    ("POST", "/predict", {"json": {"review": ["fine"]}}),
    ("POST", "/predict", {"json": ["fine"]}),
    ("POST", "/predict", {"json": {"reviews": ["x" * 60]}}),
    ("POST", "/predict", {"json": {"reviews": ["ok"] * 5}}),
    ("POST", "/predict", {"content": b"not json", "headers": {"content-type": "application/json"}}),
    ("POST", "/predict", {"content": b'{"reviews": ["caf\xe9"]}', "headers": {"content-type": "application/json"}}),
    ("POST", "/predict", {"content": b'{"reviews": ["fine"]}', "headers": {"content-type": "text/plain"}}),
    ("POST", "/predict", {"content": b"x" * 2_000, "headers": {"content-type": "application/json"}}),
    ("POST", "/predict", {"json": {"reviews": ["fine"]}, "headers": {"x-api-key": "wrong"}}),
    ("POST", "/predict", {"json": {"reviews": ["fine"]}, "headers": {"x-api-key": "key-1"}}),
    ("GET", "/predict", {}),
    ("POST", "/predict/", {"json": {"reviews": ["fine"]}}),
]


def test_the_fast_path_and_fastapis_router_answer_every_request_alike():
    """SENTIMENT_FAST_PATH=false is how a FastAPI upgrade is checked against the plain router."""
    answers = {}
    for fast_path in (True, False):
        settings = {"fast_path": fast_path, "max_reviews": 4, "max_review_chars": 50, "max_body_bytes": 1_000,
                    "api_keys": ["key-1"]}
        with TestClient(create_app(Settings(model_dir=MODELS_DIR, **settings))) as test_client:
            wait_until_ready(test_client)
            answers[fast_path] = []
            for method, url, kwargs in EQUIVALENCE_REQUESTS:
                headers = {"x-api-key": "key-1", **kwargs.get("headers", {})}
                response = test_client.request(method, url, **{**kwargs, "headers": headers})
                answers[fast_path].append((method, url, response.status_code, response.json()))
    assert {status for _, _, status, _ in answers[True]} >= {200, 401, 404, 405, 413, 415, 422}
    assert answers[True] == answers[False]


def test_the_fast_path_refuses_a_dependency_it_would_not_run():
    from fastapi import APIRouter, Depends

    from service.fast_path import FastPathError, SentimentAPI
    from service.routes import predict as predict_route

    def audit() -> None:
        pass

    router = APIRouter()
    router.add_api_route("/predict", predict_route.predict, methods=["POST"], dependencies=[Depends(audit)])
    with pytest.raises(FastPathError, match="cannot run dependency .*audit.* SENTIMENT_FAST_PATH=false"):
        SentimentAPI().include_fast_router(router)
    with pytest.raises(FastPathError, match="cannot run dependency .*audit"):
        SentimentAPI().include_fast_router(predict_route.router, dependencies=[Depends(audit)])

    async def with_a_parameter(limit: int = 3) -> None:
        pass

    router = APIRouter()
    router.add_api_route("/predict", with_a_parameter, methods=["POST"])
    with pytest.raises(FastPathError, match="does not read parameter\\(s\\) limit"):
        SentimentAPI().include_fast_router(router)


def test_a_trailing_slash_gets_a_404_that_names_the_route(client):
    response = client.post("/predict/", json={"reviews": ["fine"]})
    assert response.status_code == 404
    assert response.json()["detail"] == [{"type": "not_found", "loc": [], "msg": (
        "nothing is served at /predict/; did you mean /predict (without the trailing slash)?")}]
    assert client.get("/nowhere/").json()["detail"][0]["msg"] == "Not Found"


def test_two_models_can_be_asked_for_with_commas(client):
    body = predict(client, ["A fine film."], ["conv1d,conv_lstm"]).json()
    assert [r["model"] for r in body["results"]] == ["conv1d", "conv_lstm"]
    assert body == predict(client, ["A fine film."], ["conv1d", "conv_lstm"]).json()


def test_each_result_names_the_version_that_models_lists(client):
    versions = {m["name"]: m["version"] for m in client.get("/models").json()["models"]}
    assert versions == {name: read_metadata(name)["onnx_sha256"][:12] for name in MODEL_NAMES}
    for result in predict(client, ["fine"], ["all"]).json()["results"]:
        assert result["version"] == versions[result["model"]]


def test_every_error_has_the_same_shape(client):
    responses = [
        client.post("/predict", json={"reviews": []}),
        client.post("/predict?model=bert", json={"reviews": ["x"]}),
        client.post("/predict", content=b"{}", headers={"content-type": "text/plain"}),
        client.get("/nowhere"),
        client.delete("/models"),
        client.post("/predict", json={"reviews": [" "]}),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500
        (detail,) = response.json()["detail"]
        assert set(detail) <= {"type", "loc", "msg", "ctx"} and detail["type"] and detail["msg"]
        assert not detail["msg"].startswith("Value error"), detail["msg"]


def test_docs_and_the_schema_are_counted_under_their_own_paths(client):
    client.get("/docs")
    client.get("/openapi.json")
    metrics = client.get("/metrics").text
    for path in ("/docs", "/openapi.json"):
        assert f'sentiment_http_requests_total{{method="GET",path="{path}",status="200"}}' in metrics


def test_python_m_service_help_lists_the_settings_and_does_not_serve():
    result = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0
    assert "SENTIMENT_MODEL_DIR" in result.stdout and "SENTIMENT_FAST_PATH" in result.stdout
    wrong = subprocess.run([sys.executable, "-m", "service", "--port", "9"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=30)
    assert wrong.returncode == 2 and "SENTIMENT_PORT=8001 python -m service" in wrong.stderr


def test_repeated_headers_are_read_as_starlette_reads_them_on_both_paths():
    """The first of repeated headers counts, through the fast path and through FastAPI's router alike."""
    for fast_path in (True, False):
        with TestClient(create_app(Settings(model_dir=MODELS_DIR, fast_path=fast_path, api_keys=["k1"]))) as client:
            body = b'{"reviews": ["fine"]}'
            bad_key_first = client.post("/predict", content=body, headers=[
                ("content-type", "application/json"), ("x-api-key", "bad"), ("x-api-key", "k1")])
            text_first = client.post("/predict", content=body, headers=[
                ("x-api-key", "k1"), ("content-type", "text/plain"), ("content-type", "application/json")])
            assert (bad_key_first.status_code, text_first.status_code) == (401, 415), fast_path


def test_an_unexpected_error_on_the_fast_path_is_a_logged_json_500(monkeypatch):
    from service.routes import predict as predict_route

    def explode(result):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(predict_route, "render", explode)
    with fake_client(fakes.model("fake")) as test_client:
        wait_until_ready(test_client)
        response = predict(test_client, ["good"])
    assert response.status_code == 500
    assert response.json()["detail"] == [{"type": "internal_error", "loc": [],
                                          "msg": "internal error; the service log has the details"}]
