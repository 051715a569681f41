"""The Open Inference Protocol (v2) spoken by a real client: NVIDIA's ``tritonclient`` (HTTP) against
``python -m service`` on the committed models, every answer compared with /predict's; httpx where the exact
error shape matters; TestClient with fake models for what only the inside shows (the shared batcher, a failing
model, the access log)."""

import json
import re
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from tritonclient.utils import InferenceServerException

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata as read_model_metadata
from benchmarks import v2_binary
from service.app import create_app
from service.config import Settings
from tests import fakes
from tests.conftest import MODEL_NAMES, MODELS_DIR, REPO_ROOT, read_sample_reviews, running_server, wait_until_ready

KEY = "v2-test-key"
BINARY_WAYS = [(False, False), (True, True), (True, False), (False, True)]  # (inputs, outputs) as binary data


def sample_reviews() -> list[str]:
    """Real IMDB reviews of the committed sample: short and long ones, one longer than the 500 words a model
    reads, one with non-ASCII text, and a short review in French with an emoji."""
    reviews = sorted(read_sample_reviews(), key=lambda review: (review["split"], review["id"]))
    texts = [review["text"] for review in reviews]
    chosen = texts[:3] + [max(texts, key=lambda text: len(text.split())),
                          next(text for text in texts if not text.isascii())]
    assert len(chosen[3].split()) > 500
    return chosen + ["Ça m'a plu — un très beau film 🎬"]


REVIEWS = sample_reviews()


@pytest.fixture(scope="module")
def server():
    with running_server() as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def client(server):
    triton = httpclient.InferenceServerClient(server.removeprefix("http://"), network_timeout=60)
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def keyed_server():
    """API keys and small limits, to reach them."""
    with running_server(api_keys=KEY, max_reviews="4", max_review_chars="300", max_body_bytes="20000") as (url, _):
        yield url


def predict(base_url: str, model: str, reviews: list[str], headers: dict | None = None) -> tuple[list, list]:
    """/predict's scores and labels for ``reviews``."""
    response = httpx.post(f"{base_url}/predict", params={"model": model}, json={"reviews": reviews},
                          headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    return [p["score"] for p in result["predictions"]], [p["label"] for p in result["predictions"]]


def model_version(base_url: str, model: str) -> str:
    return next(m["version"] for m in httpx.get(f"{base_url}/models").json()["models"] if m["name"] == model)


def text_input(reviews, binary: bool = True, shape: list[int] | None = None, datatype: str = "BYTES",
               name: str = "text") -> httpclient.InferInput:
    shape = [len(reviews)] if shape is None else shape
    tensor = httpclient.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(np.array(reviews, dtype=object).reshape(shape), binary_data=binary)
    return tensor


def array_input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def outputs(binary: bool, *names: str) -> list[httpclient.InferRequestedOutput]:
    return [httpclient.InferRequestedOutput(name, binary_data=binary) for name in names or ("score", "label")]


def tokens_of(model: str, reviews: list[str]) -> np.ndarray:
    return load_tokenizer(read_model_metadata(MODELS_DIR / f"{model}.json"), MODELS_DIR).encode_batch(reviews)


def server_error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


# ---- health and metadata


def test_the_server_is_live_and_ready_and_names_the_binary_extension(client, server):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata == {"name": "imdb-sentiment-service", "version": httpx.get(f"{server}/openapi.json").json()[
        "info"]["version"], "extensions": ["binary_tensor_data"]}
    assert httpx.get(f"{server}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server}/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_is_ready_and_describes_its_inputs_outputs_platform_and_version(client, server, model):
    version = model_version(server, model)
    assert client.is_model_ready(model) and client.is_model_ready(model, model_version=version)
    expected = {
        "name": model, "versions": [version], "platform": "onnxruntime",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]},
                   {"name": "tokens", "datatype": "INT32", "shape": [-1, read_model_metadata(
                       MODELS_DIR / f"{model}.json").max_len]}],
        "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]}]}
    assert client.get_model_metadata(model) == expected
    assert client.get_model_metadata(model, model_version=version) == expected


# ---- inference


@pytest.mark.parametrize("binary_inputs, binary_outputs", BINARY_WAYS)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_scores_reviews_as_predict_does_in_json_and_in_binary(client, server, model, binary_inputs,
                                                                          binary_outputs):
    result = client.infer(model, [text_input(REVIEWS, binary_inputs)], outputs=outputs(binary_outputs))
    scores, labels = predict(server, model, REVIEWS)
    assert result.as_numpy("score").dtype == np.float32
    np.testing.assert_allclose(result.as_numpy("score"), scores, rtol=0, atol=1e-6)
    assert [label.decode() if binary_outputs else label for label in result.as_numpy("label")] == labels
    response = result.get_response()
    assert response["model_name"] == model and response["model_version"] == model_version(server, model)
    for output in response["outputs"]:
        assert output["shape"] == [len(REVIEWS)]
        assert ("data" not in output) == binary_outputs == ("binary_data_size" in output.get("parameters", {}))


def test_without_requested_outputs_both_come_back_as_binary_data(client, server):
    """tritonclient asks for every output as binary data (binary_data_output) when it names none."""
    result = client.infer("conv1d", [text_input(REVIEWS, binary=False)])
    assert [(o["name"], o["datatype"], "data" in o) for o in result.get_response()["outputs"]] == [
        ("score", "FP32", False), ("label", "BYTES", False)]
    scores, labels = predict(server, "conv1d", REVIEWS)
    np.testing.assert_allclose(result.as_numpy("score"), scores, rtol=0, atol=1e-6)
    assert [label.decode() for label in result.as_numpy("label")] == labels


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_reviews_tokenized_by_the_client_score_as_their_text_does(client, server, model):
    tokens = tokens_of(model, REVIEWS)
    scores, labels = predict(server, model, REVIEWS)
    for datatype, dtype in (("INT32", np.int32), ("INT64", np.int64)):
        for binary in (False, True):
            result = client.infer(model, [array_input("tokens", tokens.astype(dtype), datatype, binary)],
                                  outputs=outputs(binary))
            np.testing.assert_allclose(result.as_numpy("score"), scores, rtol=0, atol=1e-6,
                                       err_msg=f"{datatype}, binary={binary}")
            assert [label.decode() if binary else label for label in result.as_numpy("label")] == labels


def test_nested_json_data_reads_as_its_row_major_elements(server):
    """The protocol lets JSON data keep its dimensions (what numpy's tolist() gives), not only flat lists."""
    body = {"inputs": [{"name": "tokens", "shape": [2, 500], "datatype": "INT64",
                        "data": tokens_of("conv1d", REVIEWS[:2]).tolist()}]}
    response = httpx.post(f"{server}/v2/models/conv1d/infer", json=body)
    assert response.status_code == 200, response.text
    (score,) = (output["data"] for output in response.json()["outputs"] if output["name"] == "score")
    np.testing.assert_allclose(score, predict(server, "conv1d", REVIEWS[:2])[0], rtol=0, atol=1e-6)


def test_only_the_requested_outputs_come_back_in_the_order_and_format_asked(client, server):
    result = client.infer("conv1d", [text_input(REVIEWS)], outputs=outputs(True, "label"))
    assert [output["name"] for output in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("score") is None
    mixed = [httpclient.InferRequestedOutput("label", binary_data=False),
             httpclient.InferRequestedOutput("score", binary_data=True)]
    result = client.infer("conv1d", [text_input(REVIEWS)], outputs=mixed)
    label, score = result.get_response()["outputs"]
    assert label["name"] == "label" and "data" in label and score["name"] == "score" and "data" not in score
    scores, labels = predict(server, "conv1d", REVIEWS)
    np.testing.assert_allclose(result.as_numpy("score"), scores, rtol=0, atol=1e-6)
    assert result.as_numpy("label").tolist() == labels


def test_the_request_id_is_echoed_and_left_out_when_none_is_sent(client):
    assert client.infer("conv1d", [text_input(REVIEWS[:1])], request_id="batch-17").get_response()["id"] == "batch-17"
    assert "id" not in client.infer("conv1d", [text_input(REVIEWS[:1])]).get_response()


def test_a_model_answers_under_its_own_version_only(client, server):
    version = model_version(server, "bigram_bag")
    result = client.infer("bigram_bag", [text_input(REVIEWS)], model_version=version, outputs=outputs(False))
    np.testing.assert_allclose(result.as_numpy("score"), predict(server, "bigram_bag", REVIEWS)[0], rtol=0, atol=1e-6)
    assert result.get_response()["model_version"] == version
    error = server_error(lambda: client.infer("bigram_bag", [text_input(REVIEWS)], model_version="1"))
    assert error.status() == "404" and f"has no version '1'; its version is {version}" in error.message()
    assert server_error(lambda: client.get_model_metadata("bigram_bag", model_version="1")).status() == "404"
    assert not client.is_model_ready("bigram_bag", model_version="1")


def test_an_unknown_model_is_a_404_that_names_the_served_models(client):
    for call in (lambda: client.infer("bert", [text_input(REVIEWS)]), lambda: client.get_model_metadata("bert")):
        error = server_error(call)
        assert error.status() == "404"
        assert error.message() == f"unknown model 'bert'; served: {', '.join(MODEL_NAMES)}"
    assert not client.is_model_ready("bert")


def out_of_range_tokens() -> np.ndarray:
    tokens = tokens_of("conv1d", REVIEWS[:2])
    tokens[1, -1] = 10_000  # conv1d reads 10,000 words: ids 0 to 9,999
    return tokens


# (inputs, what the 400 says); each is sent as JSON and as binary data.
MALFORMED = {
    "a number as text": (lambda b: [array_input("text", np.array([1, 2], dtype=np.int32), "INT32", b)],
                         "input 'text' must be BYTES (UTF-8 reviews), not INT32"),
    "text as tokens": (lambda b: [text_input(REVIEWS[:1], b, shape=[1, 1], name="tokens")],
                       "input 'tokens' must be INT32 or INT64, not BYTES"),
    "floats as tokens": (lambda b: [array_input("tokens", np.zeros((1, 500), np.float32), "FP32", b)],
                         "input 'tokens' must be INT32 or INT64, not FP32"),
    "a matrix of text": (lambda b: [text_input(REVIEWS[:2], b, shape=[2, 1])],
                         "input 'text' has shape [2, 1]; expected [n], one review per element"),
    "tokens of the wrong length": (lambda b: [array_input("tokens", np.ones((2, 499), np.int32), "INT32", b)],
                                   "model conv1d reads 500 token ids per review: [n, 500]"),
    "a flat list of tokens": (lambda b: [array_input("tokens", np.ones(500, np.int32), "INT32", b)],
                              "input 'tokens' has shape [500]; expected [n, 500]"),
    "an empty batch": (lambda b: [text_input([], b)],
                       "input 'text' is an empty batch (shape [0]); send at least one review"),
    "an empty batch of tokens": (lambda b: [array_input("tokens", np.ones((0, 500), np.int32), "INT32", b)],
                                 "input 'tokens' is an empty batch (shape [0, 500])"),
    "a batch over the limit": (lambda b: [text_input(["a fine film"] * 257, b)],
                               "too many reviews: 257, at most 256 per request (SENTIMENT_MAX_REVIEWS)"),
    "tokens over the limit": (lambda b: [array_input("tokens", np.ones((257, 500), np.int32), "INT32", b)],
                              "too many reviews: 257, at most 256 per request (SENTIMENT_MAX_REVIEWS)"),
    "a blank review": (lambda b: [text_input(["a fine film", " \n"], b)],
                       "reviews must contain text; reviews at positions [1] are empty or whitespace only"),
    "token ids past the vocabulary": (lambda b: [array_input("tokens", out_of_range_tokens(), "INT32", b)],
                                      "token ids of model conv1d are 0 to 9999"),
    "an unknown input": (lambda b: [text_input(REVIEWS[:1], b, name="review")],
                         "unknown input 'review'; model conv1d takes 'text' (BYTES [n]) or 'tokens'"),
    "two inputs": (lambda b: [text_input(REVIEWS[:1], b), array_input("tokens", tokens_of("conv1d", REVIEWS[:1]),
                                                                      "INT32", b)],
                   "send one input, 'text' (BYTES [n], raw reviews) or 'tokens' (INT32 or INT64 [n, 500]); got 2"),
}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_request_is_a_400_that_says_what_to_fix(client, case, binary):
    inputs, message = MALFORMED[case]
    error = server_error(lambda: client.infer("conv1d", inputs(binary), outputs=outputs(binary)))
    assert error.status() == "400" and message in error.message(), error.message()


def test_an_unknown_or_repeated_output_is_a_400(client):
    error = server_error(lambda: client.infer("conv1d", [text_input(REVIEWS[:1])], outputs=outputs(True, "logit")))
    assert error.status() == "400"
    assert error.message() == "unknown output 'logit'; the outputs are 'score' (FP32) and 'label' (BYTES)"
    error = server_error(lambda: client.infer("conv1d", [text_input(REVIEWS[:1])],
                                              outputs=outputs(True, "score", "score")))
    assert error.status() == "400" and error.message() == "output 'score' is requested twice"


def binary_body(request: dict, *chunks: bytes) -> tuple[bytes, dict]:
    header = json.dumps(request).encode()
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def text_request(size: int | None = None, shape: list[int] | None = None, **fields) -> dict:
    tensor = {"name": "text", "shape": [1] if shape is None else shape, "datatype": "BYTES", **fields}
    if size is not None:
        tensor["parameters"] = {"binary_data_size": size}
    return {"inputs": [tensor]}


GOOD = b"A fine film"
ELEMENT = len(GOOD).to_bytes(4, "little") + GOOD
# (body, headers, what the 400 says), sent with httpx: exact bodies tritonclient would never send.
BROKEN_BODIES = {
    "not JSON": (b"{not json", {}, "invalid inference request: body: Invalid JSON"),
    "not UTF-8": (b'{"inputs": "\xff"}', {}, "invalid inference request"),
    "no inputs": (b'{"id": "1"}', {}, "invalid inference request: inputs: Field required"),
    "a field the protocol does not have": (json.dumps({**text_request(data=["x"]), "input": []}).encode(), {},
                                           "input: Extra inputs are not permitted"),
    "an unknown datatype": (json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "STRING",
                                                    "data": ["x"]}]}).encode(), {},
                            "inputs.0.datatype: Input should be 'BOOL', 'UINT8'"),
    "no data": (json.dumps(text_request()).encode(), {},
                "input 'text' has no data: send data, or binary data with binary_data_size"),
    "fewer elements than the shape": (json.dumps(text_request(shape=[3], data=["a", "b"])).encode(), {},
                                      "input 'text' has 2 elements of data; shape [3] takes 3"),
    "a number as a review": (json.dumps(text_request(data=[5])).encode(), {},
                             "input 'text': every element of data must be a string"),
    "floats as token ids": (json.dumps({"inputs": [{"name": "tokens", "shape": [1, 500], "datatype": "INT32",
                                                    "data": [0.5] * 500}]}).encode(), {},
                            "input 'tokens': every element of data must be an integer (a token id)"),
    "booleans as token ids": (json.dumps({"inputs": [{"name": "tokens", "shape": [1, 500], "datatype": "INT64",
                                                      "data": [True] * 500}]}).encode(), {},
                              "input 'tokens': every element of data must be an integer (a token id)"),
    "binary_data_output not a boolean": (json.dumps({**text_request(data=["x"]), "parameters": {
        "binary_data_output": "yes"}}).encode(), {}, "parameter binary_data_output must be true or false"),
    "a header length past the body": (b"{}", {"Inference-Header-Content-Length": "10"},
                                      "Inference-Header-Content-Length is 10 but the body has only 2 bytes"),
    "a header length that is no number": (b"{}", {"Inference-Header-Content-Length": "ten"},
                                          "Inference-Header-Content-Length: Input should be a valid integer"),
    "binary data without a size": (*binary_body(text_request(data=["x"]), ELEMENT),
                                   f"{len(ELEMENT)} bytes of binary data after the JSON header belong to no input"),
    "a size past the binary data": (*binary_body(text_request(len(ELEMENT) + 1), ELEMENT),
                                    f"binary_data_size is {len(ELEMENT) + 1} but only {len(ELEMENT)} bytes"),
    "a negative size": (*binary_body(text_request(-1), ELEMENT), "binary_data_size must be a non-negative integer"),
    "binary data and data": (*binary_body(text_request(len(ELEMENT), data=["x"]), ELEMENT),
                             "input 'text' has both data and binary_data_size"),
    "a cut BYTES element": (*binary_body(text_request(len(ELEMENT) - 1), ELEMENT[:-1]),
                            "the binary data of input 'text' is not 1 BYTES elements"),
    "more BYTES elements than the shape": (*binary_body(text_request(2 * len(ELEMENT)), ELEMENT * 2),
                                           "the binary data of input 'text' is not 1 BYTES elements"),
    "a review that is not UTF-8": (*binary_body(text_request(6), b"\x02\x00\x00\x00\xc3\x28"),
                                   "review 0 is not valid UTF-8 (invalid continuation byte at byte 0)"),
    "tokens of the wrong byte count": (*binary_body({"inputs": [{"name": "tokens", "shape": [1, 500],
                                                                 "datatype": "INT32",
                                                                 "parameters": {"binary_data_size": 1999}}]},
                                                    bytes(1999)),
                                       "input 'tokens' has 1999 bytes of binary data; shape [1, 500] of INT32 takes "
                                       "2000"),
    "a form body": (b"inputs=x", {"Content-Type": "application/x-www-form-urlencoded"},
                    "unsupported Content-Type 'application/x-www-form-urlencoded'"),
    "a compressed body": (b"\x1f\x8b", {"Content-Encoding": "gzip"}, "compressed request bodies are not supported"),
}


@pytest.mark.parametrize("case", BROKEN_BODIES)
def test_a_broken_body_is_a_400_in_the_protocols_error_shape(server, case):
    body, headers, message = BROKEN_BODIES[case]
    response = httpx.post(f"{server}/v2/models/conv1d/infer", content=body, headers=headers)
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    (error,) = response.json().values()
    assert list(response.json()) == ["error"] and message in error, error
    assert "Traceback" not in response.text


def test_paths_and_methods_the_service_does_not_serve_answer_in_the_protocols_shape(client, server):
    error = server_error(lambda: client.get_model_config("conv1d"))  # Triton's own extension
    assert error.status() == "404" and error.message() == "Not Found"
    for method in ("GET", "PUT", "QUERY"):
        response = httpx.request(method, f"{server}/v2/models/conv1d/infer")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert response.json() == {"error": "Method Not Allowed"}
    response = httpx.post(f"{server}/v2/models/conv1d/infer/", json={})
    assert response.status_code == 404 and response.json() == {
        "error": "nothing is served at /v2/models/conv1d/infer/; did you mean /v2/models/conv1d/infer (without the "
                 "trailing slash)?"}
    assert httpx.post(f"{server}/predict/", json={}).json()["detail"][0]["type"] == "not_found"  # /predict's shape


# ---- API keys, limits, metrics and the access log, as /predict has them


def test_api_keys_guard_v2_as_they_guard_predict_and_leave_its_health_open(keyed_server):
    anonymous = httpclient.InferenceServerClient(keyed_server.removeprefix("http://"))
    try:
        assert anonymous.is_server_live() and anonymous.is_server_ready()
        for call in (lambda: anonymous.infer("conv1d", [text_input(REVIEWS[:1])]),
                     lambda: anonymous.get_model_metadata("conv1d"), anonymous.get_server_metadata,
                     lambda: anonymous.infer("conv1d", [text_input(REVIEWS[:1])], headers={"X-API-Key": "wrong"})):
            error = server_error(call)
            assert error.status() == "401"
            assert error.message() == "missing or invalid API key; send a valid key in the X-API-Key header"
        assert not anonymous.is_model_ready("conv1d")
        keyed = {"X-API-Key": KEY}
        short = ["A beautiful, moving film.", "Dull and far too long."]  # this server takes 300 characters at most
        result = anonymous.infer("conv1d", [text_input(short)], headers=dict(keyed))  # infer() adds to its headers
        scores, _ = predict(keyed_server, "conv1d", short, headers=keyed)
        np.testing.assert_allclose(result.as_numpy("score"), scores, rtol=0, atol=1e-6)
        assert anonymous.is_model_ready("conv1d", headers=dict(keyed))
    finally:
        anonymous.close()


def test_the_limits_of_predict_hold_for_v2(keyed_server):
    keyed = {"X-API-Key": KEY}
    triton = httpclient.InferenceServerClient(keyed_server.removeprefix("http://"))
    try:
        error = server_error(lambda: triton.infer("conv1d", [text_input(["a fine film"] * 5)], headers=dict(keyed)))
        assert error.status() == "400" and error.message() == (
            "too many reviews: 5, at most 4 per request (SENTIMENT_MAX_REVIEWS); split them over several requests")
        error = server_error(lambda: triton.infer("conv1d", [text_input(["a", "b" * 301])], headers=dict(keyed)))
        assert error.status() == "400" and error.message() == (
            "review 1 has 301 characters, at most 300 are accepted (SENTIMENT_MAX_REVIEW_CHARS); shorten it")
        error = server_error(lambda: triton.infer("conv1d", [text_input(["long " * 1000] * 4)],
                                                  headers=dict(keyed)))
        assert error.status() == "413" and error.message() == (
            "request body is larger than 20000 bytes (SENTIMENT_MAX_BODY_BYTES); send fewer or shorter reviews per "
            "request")
    finally:
        triton.close()
    # A streamed body without Content-Length is cut off at the limit too, in the same shape.
    response = httpx.post(f"{keyed_server}/v2/models/conv1d/infer", headers=keyed,
                          content=iter([b" " * 15_000, b" " * 15_000]))
    assert response.status_code == 413 and response.json() == {"error": error.message()}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def fake_client(*models, **settings) -> TestClient:
    settings = Settings(model_dir=MODELS_DIR, **settings)
    return TestClient(create_app(settings, core=fakes.core(*models, settings=settings)))


def json_request(reviews: list[str]) -> dict:
    return {"inputs": [{"name": "text", "shape": [len(reviews)], "datatype": "BYTES", "data": reviews}]}


def test_v2_and_predict_requests_for_a_model_share_its_batcher_and_its_metrics():
    """While the model scores one /predict request, a /predict and a /v2 request queue up: its batcher
    gathers them into one model call of two rows."""
    calls, release = [], threading.Event()

    def gated(tokens):
        calls.append(len(tokens))
        if len(calls) == 2:  # the first call after the warm-up waits until the others have queued
            assert release.wait(10)
        return fakes.share_of_positive_words(tokens)

    with fake_client(fakes.model("gated", gated)) as test_client:
        wait_until_ready(test_client)
        requests = metric("sentiment_predict_requests_total", model="gated", status="ok")
        infers = metric("sentiment_http_requests_total", path="/v2/models/{model_name}/infer", method="POST",
                        status="200")
        answers = {}

        def send(key, path, body):
            answers[key] = test_client.post(path, json=body)

        first = threading.Thread(target=send, args=("first", "/predict", {"reviews": ["good"]}))
        first.start()
        deadline = time.monotonic() + 10
        while len(calls) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        others = [threading.Thread(target=send, args=("predict", "/predict", {"reviews": ["awful film"]})),
                  threading.Thread(target=send, args=("v2", "/v2/models/gated/infer", json_request(["great film"])))]
        for thread in others:
            thread.start()
        batcher = test_client.app.state.core.batchers["gated"]
        while batcher._queue.qsize() < 2:  # both wait in the one batcher of the model
            assert time.monotonic() < deadline
            time.sleep(0.01)
        release.set()
        for thread in [first, *others]:
            thread.join(10)
    assert calls[1:] == [1, 2]
    assert answers["predict"].json()["results"][0]["predictions"][0]["score"] == 0.0
    assert answers["v2"].json()["outputs"][0]["data"] == [0.5]
    assert metric("sentiment_predict_requests_total", model="gated", status="ok") - requests == 3
    assert metric("sentiment_http_requests_total", path="/v2/models/{model_name}/infer", method="POST",
                  status="200") - infers == 1


def test_a_failing_model_is_a_503_in_the_protocols_shape_never_a_500():
    def broken(tokens):
        if len(tokens) == 2:
            raise RuntimeError("onnxruntime exploded")
        return np.full(len(tokens), 0.5, dtype=np.float32)

    with fake_client(fakes.model("broken", broken)) as test_client:
        wait_until_ready(test_client)
        response = test_client.post("/v2/models/broken/infer", json=json_request(["good", "bad"]))
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json() == {
            "error": "model broken failed to score the reviews (RuntimeError); other models are unaffected"}
        assert test_client.post("/v2/models/broken/infer", json=json_request(["good"])).status_code == 200


def test_each_v2_request_is_one_access_log_line_without_review_text(capsys):
    with fake_client(fakes.model("fake")) as test_client:
        wait_until_ready(test_client)
        test_client.app.state.access_log.flush()
        capsys.readouterr()
        secret = "a uniquely identifiable review text"
        test_client.post("/v2/models/fake/infer", json=json_request([secret, "good"]))
        test_client.post("/v2/models/other/infer", json=json_request([secret]))
        test_client.app.state.access_log.flush()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["path"], line["status"], line.get("models"), line.get("reviews")) for line in lines] == [
        ("/v2/models/fake/infer", 200, ["fake"], 2), ("/v2/models/other/infer", 404, None, None)]
    assert secret not in json.dumps(lines)


def test_openapi_documents_the_v2_routes_with_their_request_and_error_shapes():
    with TestClient(create_app(Settings(model_dir=MODELS_DIR))) as test_client:
        schema = test_client.get("/openapi.json").json()
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}", "/v2/models/{model_name}/ready",
            "/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"} <= set(
        schema["paths"])
    infer = schema["paths"]["/v2/models/{model_name}/infer"]["post"]
    body = infer["requestBody"]["content"]
    assert set(body) == {"application/json", "application/octet-stream"}
    request = body["application/json"]["schema"]
    assert request["properties"]["inputs"]["items"]["properties"]["datatype"]["enum"][-2:] == ["BYTES", "BF16"]
    assert request["examples"][0]["inputs"][0]["name"] == "text"
    assert {"Inference-Header-Content-Length"} == {p["name"] for p in infer["parameters"] if p["in"] == "header"}
    for status in ("400", "404", "413", "503"):
        assert infer["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/V2ErrorResponse"}
    assert set(infer["responses"]["200"]["content"]) == {"application/json", "application/octet-stream"}


# ---- the README's example and the benchmark


def readme_example() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Open Inference Protocol v2\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readmes_tritonclient_example_runs_as_written(server):
    code = readme_example()
    assert code.count('"127.0.0.1:8000"') == 1  # what `make run` serves; the test's server has a port of its own
    output = subprocess.run([sys.executable, "-c", code.replace('"127.0.0.1:8000"', repr(server.removeprefix(
        "http://")))], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    printed = [re.fullmatch(r"(\S+) (\w+) {2}(.*)", line).groups() for line in output.splitlines()]
    reviews = [review for _, _, review in printed]
    model = re.search(r'client\.infer\("(\w+)"', code).group(1)
    scores, labels = predict(server, model, reviews)
    assert len(printed) >= 2 and [label for _, label, _ in printed] == labels
    np.testing.assert_allclose([float(score) for score, _, _ in printed], scores, rtol=0, atol=1e-4)


def test_the_binary_benchmark_times_every_way_and_checks_they_agree(server):
    reviews = REVIEWS + ["A fine film."] * 2
    batches = [(np.array(reviews, dtype=object), tokens_of("bigram_bag", reviews))]
    results = v2_binary.measure(server, "bigram_bag", batches, requests=2, rounds=2)
    assert list(results) == ["text JSON", "text binary", "tokens JSON", "tokens binary"]
    for row in results.values():
        assert row["requests"] == 4 and row["p50_ms"] > 0 and row["reviews_per_s"] > 0
    text = v2_binary.markdown({"batch": len(reviews), "tritonclient": "x", "machine": {"cpu": "cpu", "cores": 2},
                               "load_average": [0.5, 0.7],
                               "date": "today", "command": "python -m benchmarks.v2_binary", "models": {
                                   "bigram_bag": results}})
    assert text.count("×**") == 2
