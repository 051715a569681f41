"""POST /explain: each word's contribution to one model's logit, with offsets into the review as sent."""

import asyncio
import json
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from artifacts.metadata import logit_is_linear_in_terms
from artifacts.tokenizer import words_with_offsets
from service import explaining
from service.app import create_app
from service.config import Settings
from service.repository import ModelRepository
from service.scoring import ModelUnavailable
from tests import fakes
from tests.conftest import MODEL_NAMES, MODELS_DIR, read_metadata, wait_until_ready


def fake_client(*models, **settings) -> TestClient:
    settings = Settings(model_dir=MODELS_DIR, **settings)
    return TestClient(create_app(settings, core=fakes.core(*models, settings=settings)))


@pytest.fixture(scope="module")
def fakes_client():
    with fake_client(fakes.linear_model("linear"), fakes.bag_model("bag", accuracy=0.9)) as client:
        wait_until_ready(client)
        yield client


def explain(client, reviews, model=None, **kwargs):
    params = None if model is None else {"model": model}
    return client.post("/explain", params=params, json={"reviews": reviews}, **kwargs)


def error_messages(response) -> str:
    return json.dumps(response.json()["detail"])


# ---- the response


def test_every_word_is_listed_with_offsets_into_the_review_as_sent(fakes_client):
    review = "GOOD film,  but the ending was AWFUL!"
    body = explain(fakes_client, [review], "linear").json()
    assert (body["model"], body["method"]) == ("linear", "occlusion")
    (explanation,) = body["explanations"]
    tokens = explanation["tokens"]
    assert [t["text"] for t in tokens] == ["good", "film", "but", "the", "ending", "was", "awful"]
    assert all(review[t["start"]:t["end"]].lower() == t["text"] for t in tokens)
    assert [(t["start"], t["end"]) for t in tokens[:2]] == [(0, 4), (5, 9)]
    assert not any(t["truncated"] for t in tokens)


def test_occlusion_gives_each_word_its_effect_on_the_logit(fakes_client):
    # The fake's logit is a sum of word weights, so replacing a word by OOV removes exactly its weight.
    (explanation,) = explain(fakes_client, ["good film, great but awful zzz"], "linear").json()["explanations"]
    assert [t["contribution"] for t in explanation["tokens"]] == pytest.approx([1.0, 0.0, 2.0, 0.0, -2.0, 0.0])
    assert explanation["logit"] == pytest.approx(1.0)
    assert explanation["score"] == pytest.approx(1 / (1 + np.exp(-1.0))) and explanation["label"] == "positive"
    assert explanation["bias"] is None


def test_the_bag_model_gets_exact_shares_that_add_up_with_the_bias_to_the_logit(fakes_client):
    reviews = ["good film, great but awful zzz", "bad", "!!!", "film film film good good"]
    body = explain(fakes_client, reviews, "bag").json()
    assert body["method"] == "exact"
    expected_logits = fakes.bag_logits(fakes.tokenizer().encode_batch(reviews))
    for explanation, logit in zip(body["explanations"], expected_logits, strict=True):
        shares = sum(t["contribution"] for t in explanation["tokens"])
        assert explanation["logit"] == pytest.approx(logit, abs=1e-9)
        assert explanation["bias"] + shares == pytest.approx(logit, abs=1e-9)
    assert body["explanations"][2]["tokens"] == []  # no word: the logit is all bias


def test_the_default_model_explains_without_a_model_name(fakes_client):
    assert explain(fakes_client, ["good"]).json()["model"] == "bag"  # the more accurate one


def test_words_cut_by_the_truncation_are_listed_with_contribution_zero(fakes_client):
    review = "great " * 3 + "good " * 8  # 11 words, the fakes read 8
    for model in ("linear", "bag"):
        (explanation,) = explain(fakes_client, [review], model).json()["explanations"]
        tokens = explanation["tokens"]
        assert len(tokens) == 11 and explanation["words"] == 8 and explanation["truncated"] is True
        assert [t["truncated"] for t in tokens] == [True] * 3 + [False] * 8
        assert [t["contribution"] for t in tokens[:3]] == [0.0] * 3
        assert all(t["contribution"] != 0 for t in tokens[3:])
        assert "truncated" in explanation["warnings"]


def test_explanations_carry_the_same_reading_and_warnings_as_predictions(fakes_client):
    reviews = ["zzz qqq", "good zzz qqq xxx", "good film", "great " * 10]
    explained = explain(fakes_client, reviews, "linear").json()["explanations"]
    predicted = fakes_client.post("/predict?model=linear", json={"reviews": reviews}).json()["results"][0]
    keys = ("score", "label", "words", "known_words", "truncated", "warnings")
    assert [{k: e[k] for k in keys} for e in explained] == predicted["predictions"]
    assert [e["warnings"] for e in explained] == [["no_known_words"], ["few_known_words"], [], ["truncated"]]


def test_the_json_is_what_the_response_models_would_write():
    from service.routes.explain import render
    from service.schemas import ExplainResponse

    for model in (fakes.linear_model(), fakes.bag_model()):
        core = fakes.core(model)
        result = asyncio.run(explain_and_close(core, ["good film", "zzz", "great " * 10, "!!"]))
        expected = ExplainResponse.model_validate({
            "model": result.model, "version": result.version, "method": result.method, "explanations": [{
                "score": e.score, "label": e.label, "words": e.words_read, "known_words": e.known_words,
                "truncated": e.truncated, "warnings": list(e.warnings), "logit": e.logit, "bias": e.bias,
                "tokens": [{"text": t.text, "start": t.start, "end": t.end, "contribution": t.contribution,
                            "truncated": t.truncated} for t in e.tokens]} for e in result.explanations]})
        assert render(result) == expected.model_dump_json().encode()


async def explain_and_close(core, reviews, model=None):
    try:
        return await core.explain(reviews, model)
    finally:
        await core.close()


# ---- requests it refuses, and the guards it shares with /predict


def test_the_default_limit_is_16_reviews_and_it_is_configurable(fakes_client):
    assert explain(fakes_client, ["good"] * 16).status_code == 200
    response = explain(fakes_client, ["good"] * 17)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "reviews"]
    assert "at most 16 per request (SENTIMENT_EXPLAIN_MAX_REVIEWS)" in error_messages(response)
    with fake_client(fakes.linear_model(), explain_max_reviews=2, max_review_chars=20) as client:
        assert explain(client, ["good"] * 2).status_code == 200
        assert "at most 2 per request" in error_messages(explain(client, ["good"] * 3))
        too_long = explain(client, ["good", "x" * 21])
        assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "reviews", 1]


@pytest.mark.parametrize("model", ["linear,bag", "all", "linear,linear"])
def test_one_model_at_a_time(fakes_client, model):
    response = explain(fakes_client, ["good"], model)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "model"]
    assert ("one model at a time; name one of linear, bag (or leave out model for the default, bag)"
            in error_messages(response))


@pytest.mark.parametrize("model", ["", " , "])
def test_an_empty_model_name_is_refused_with_the_default_named(fakes_client, model):
    response = explain(fakes_client, ["good"], model)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "model"]
    message = "empty model name; name a model, or leave out ?model= for the default model (bag)"
    assert message in error_messages(response)


@pytest.mark.parametrize(("request_kwargs", "status", "message"), [
    ({"params": {"model": "bert"}, "json": {"reviews": ["good"]}}, 422,
     "unknown model 'bert'; valid names: linear, bag"),
    ({"json": {"reviews": []}}, 422, "at least 1 item"),
    ({"json": {"reviews": ["good", " "]}}, 422, "reviews at positions [1] are empty or whitespace only"),
    ({"json": {"reviews": ["good", 3]}}, 422, "valid string"),
    ({"json": {"review": ["good"]}}, 422, "Field required"),
    ({"content": b"not json", "headers": {"content-type": "application/json"}}, 422, "Invalid JSON"),
    ({"content": b'{"reviews": ["good"]}', "headers": {"content-type": "text/plain"}}, 415,
     "Content-Type: application/json"),
    ({"content": b'{"reviews": ["x' + b"x" * 2_000 + b'"]}', "headers": {"content-type": "application/json"}}, 413,
     "SENTIMENT_MAX_BODY_BYTES"),
])
def test_bad_requests_get_the_same_errors_as_predict(request_kwargs, status, message):
    with fake_client(fakes.linear_model(), fakes.bag_model(), max_body_bytes=1_000) as client:
        explained = client.post("/explain", **request_kwargs)
        predicted = client.post("/predict", **request_kwargs)
    assert explained.status_code == status and message in error_messages(explained)
    assert (explained.status_code, explained.json()) == (predicted.status_code, predicted.json())


def test_api_keys_guard_explain_like_predict():
    with fake_client(fakes.linear_model(), api_keys=["key-1"]) as client:
        refused = explain(client, ["good"])
        assert refused.status_code == 401 and refused.json()["detail"][0]["type"] == "unauthorized"
        assert explain(client, ["good"], headers={"x-api-key": "wrong"}).status_code == 401
        assert explain(client, ["good"], headers={"x-api-key": "key-1"}).status_code == 200


def test_requests_are_counted_and_logged_like_predict(capsys):
    def sample(text: str, name: str) -> float:
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
        return values[0] if values else 0.0

    with fake_client(fakes.linear_model(), fakes.bag_model()) as client:
        wait_until_ready(client)
        before = client.get("/metrics").text
        explain(client, ["a uniquely identifiable review", "good"], "bag")
        explain(client, ["good"], "nope")
        after = client.get("/metrics").text
        client.app.state.access_log.flush()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for name in ('sentiment_http_requests_total{method="POST",path="/explain",status="200"}',
                 'sentiment_http_requests_total{method="POST",path="/explain",status="422"}',
                 'sentiment_http_request_duration_seconds_count{method="POST",path="/explain"}'):
        assert sample(after, name) - sample(before, name) >= 1, name
    # Other tests' clients may flush their own lines meanwhile: look for this test's two requests.
    explained = [line for line in lines if line["path"] == "/explain"]
    assert (["bag"], 2) in [(line["models"], line["reviews"]) for line in explained if line["status"] == 200]
    assert any(line["status"] == 422 for line in explained)
    assert "a uniquely identifiable review" not in json.dumps(lines)


def test_a_failing_model_gives_503_for_that_model_only():
    def broken(tokens):
        raise RuntimeError("onnxruntime exploded")

    working = fakes.linear_model("working")
    failing = fakes.model("broken", lambda tokens: np.full(len(tokens), 0.5), logits=broken)
    with fake_client(working, failing) as client:
        response = explain(client, ["good"], "broken")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["detail"] == [{"type": "model_unavailable", "loc": ["model", "broken"], "msg": (
            "model broken failed to explain the reviews (RuntimeError); other models are unaffected")}]
        assert explain(client, ["good"], "working").status_code == 200


def test_an_explanation_over_the_time_limit_gives_503():
    def slow(tokens):
        time.sleep(1.0)
        return fakes.linear_logits(tokens)

    model = fakes.model("slow", lambda tokens: fakes.sigmoid(fakes.linear_logits(tokens)), logits=slow)
    with fake_client(model, request_timeout_seconds=0.2) as client:
        started = time.perf_counter()
        response = explain(client, ["good"])
        assert response.status_code == 503 and time.perf_counter() - started < 1.0
        assert "longer than 0.2 s (SENTIMENT_REQUEST_TIMEOUT_SECONDS)" in error_messages(response)


def test_explanations_run_off_the_event_loop():
    release, started = threading.Event(), threading.Event()
    released = []

    def blocking(tokens):  # on the event loop, it would wait in vain: nothing else could run to release it
        started.set()
        released.append(release.wait(2))
        return fakes.linear_logits(tokens)

    model = fakes.model("blocking", lambda tokens: fakes.sigmoid(fakes.linear_logits(tokens)), logits=blocking)
    core = fakes.core(model, fakes.linear_model("other"))

    async def run():
        explaining_task = asyncio.create_task(core.explain(["good"], "blocking"))
        await asyncio.to_thread(started.wait, 5)
        scored = await core.score(["good"], ["other"])  # the loop is free while the explanation runs
        release.set()
        explained = await explaining_task
        await core.close()
        return scored, explained

    scored, explained = asyncio.run(run())
    assert scored.results[0].labels == ["positive"] and explained.explanations[0].label == "positive"
    assert released == [True]


def test_a_closed_core_refuses_new_explanations():
    core = fakes.core(fakes.linear_model())

    async def run():
        await core.explain(["good"])
        await core.close()
        await core.explain(["good"])

    with pytest.raises(ModelUnavailable, match="shutting down"):
        asyncio.run(run())


def test_occlusion_scores_a_review_and_its_variants_together_in_chunks():
    calls = []

    def recording(tokens):
        calls.append(tokens.copy())
        return fakes.linear_logits(tokens)

    model = fakes.model("m", lambda tokens: fakes.sigmoid(fakes.linear_logits(tokens)), logits=recording)
    logit, bias, contributions = explaining.Occlusion(model, chunk_rows=3).explain_row(
        fakes.tokenizer().encode_batch(["good zzz bad great film"])[0])
    rows = np.concatenate(calls)
    assert [len(c) for c in calls] == [3, 2]  # the review + 4 known words (zzz is OOV already), in chunks of 3
    assert (rows == 2).sum(axis=1).tolist() == [1, 2, 2, 2, 2]  # each variant has one more OOV
    assert contributions[-5:].tolist() == pytest.approx([1.0, 0.0, -1.0, 2.0, 0.0]) and bias is None


def test_openapi_documents_explain_with_its_limit_and_models(fakes_client):
    schema = fakes_client.get("/openapi.json").json()
    operation = schema["paths"]["/explain"]["post"]
    assert {"401", "413", "415", "422", "503"} <= set(operation["responses"])
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExplainRequest"}
    assert schema["components"]["schemas"]["ExplainRequest"]["properties"]["reviews"]["maxItems"] == 16
    (model,) = operation["parameters"]
    assert model["schema"]["anyOf"][0]["enum"] == ["linear", "bag"]
    assert "examples" in schema["components"]["schemas"]["ExplainResponse"]


# ---- the committed models


def graph_logits(name: str, tokens: np.ndarray) -> np.ndarray:
    """The graph's calibrated ``logit`` output (what the sigmoid reads, before the clip that keeps scores off 0
    and 1), or the input of the final Sigmoid of an uncalibrated export, read with onnxruntime directly."""
    graph = onnx.load(str(MODELS_DIR / f"{name}.onnx"))
    outputs = {output.name for output in graph.graph.output}
    logit = "logit"
    if logit not in outputs:  # not calibrated: the float32 input of the final sigmoid
        score = graph.graph.output[0].name
        (sigmoid,) = [node for node in graph.graph.node if score in node.output and node.op_type == "Sigmoid"]
        logit = sigmoid.input[0]
        graph.graph.output.append(helper.make_tensor_value_info(logit, TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([logit], {"tokens": tokens})[0].reshape(-1).astype(np.float64)


@pytest.fixture(scope="module")
def real_client():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR, access_log=False))) as client:
        wait_until_ready(client)
        yield client


# The committed bags whose logit is linear in their word and bigram terms (bigram_bag; robust_bag weighs its terms by
# learned saliences and is explained by occlusion, checked below).
CONFIGS = {name: read_metadata(name).get("config", {}) for name in MODEL_NAMES}
BAG_MODELS = [name for name, config in CONFIGS.items() if logit_is_linear_in_terms(config)]
SALIENCE_BAGS = [name for name, config in CONFIGS.items() if config.get("bag_pooling") == "salience"]


@pytest.mark.parametrize("name", BAG_MODELS)
def test_bag_shares_add_up_to_the_logit_on_real_reviews(real_client, real_test_reviews, name):
    texts, _ = real_test_reviews
    repository = ModelRepository.load(MODELS_DIR)
    tokens = repository.models[name].tokenizer.encode_batch(texts)
    expected = graph_logits(name, tokens)
    explained = []
    for start in range(0, len(texts), 16):
        response = explain(real_client, texts[start:start + 16], name)
        assert response.status_code == 200 and response.json()["method"] == "exact"
        explained += response.json()["explanations"]
    for text, explanation, logit in zip(texts, explained, expected, strict=True):
        contributions = [t["contribution"] for t in explanation["tokens"]]
        assert explanation["bias"] + sum(contributions) == pytest.approx(logit, abs=1e-4)
        assert explanation["logit"] == pytest.approx(logit, abs=1e-4)
        assert [(t["text"], t["start"], t["end"]) for t in explanation["tokens"]] == words_with_offsets(text)
    assert max(abs(t["contribution"]) for e in explained for t in e["tokens"]) > 0.1  # not all zero


def test_the_committed_bags_are_split_between_exact_shares_and_occlusion_by_their_pooling(real_client):
    assert BAG_MODELS and SALIENCE_BAGS and not set(BAG_MODELS) & set(SALIENCE_BAGS)
    for name in SALIENCE_BAGS:
        response = explain(real_client, ["A wonderful film, I loved it."], name)
        assert response.status_code == 200 and response.json()["method"] == "occlusion"


@pytest.mark.parametrize("model", ["conv1d", "conv_lstm_tuned", *SALIENCE_BAGS])
def test_occlusion_on_a_real_model_credits_the_clearly_worded_words(real_client, model):
    review = "This was a wonderful film with brilliant acting. I loved it. The plot is boring and the ending awful."
    (explanation,) = explain(real_client, [review], model).json()["explanations"]
    contribution = {t["text"]: t["contribution"] for t in explanation["tokens"]}
    assert contribution["wonderful"] > 0 and contribution["brilliant"] > 0 and contribution["loved"] > 0
    assert contribution["boring"] < 0
    tokens = real_client.app.state.core.repository.models[model].tokenizer.encode_batch([review])
    assert explanation["logit"] == pytest.approx(graph_logits(model, tokens)[0], abs=1e-5)


# ---- the faithfulness measurement (benchmarks/explain.py)


def test_the_faithfulness_benchmark_cuts_the_words_that_pushed_hardest_toward_the_label():
    from benchmarks.explain import cut, moved_away, toward_label

    review = "Good film, great cast; awful ending and bad, bad music."
    (explanation,) = asyncio.run(explain_and_close(fakes.core(fakes.linear_model()), [review])).explanations
    assert explanation.label == "negative"  # 1 + 2 - 2 - 1 - 1 = -1
    spans = toward_label(explanation, count=2)
    assert [review[start:end] for start, end in spans] == ["awful", "bad"]
    assert cut(review, spans) == "Good film, great cast;  ending and , bad music."
    assert toward_label(explanation, count=5) == toward_label(explanation, count=3)  # only 3 words push that way
    assert moved_away("negative", 0.3, 0.4) and not moved_away("negative", 0.3, 0.2)
    assert moved_away("positive", 0.7, 0.6) and not moved_away("positive", 0.7, 0.7)


def test_a_repeated_model_parameter_is_refused_not_half_read(fakes_client):
    response = fakes_client.post("/explain", params=[("model", "linear"), ("model", "bag")], json={"reviews": ["good"]})
    assert response.status_code == 422 and "one model at a time" in error_messages(response)
