"""Property-based and fuzz tests: schemathesis against the service's own OpenAPI schema (positive and
negative data), hypothesis against the tokenizer and the raw request body. Nothing may answer 5xx."""

import json

import numpy as np
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from artifacts.tokenizer import OOV, START, Tokenizer, text_to_words
from artifacts.vocabulary import load_word_index
from service.app import create_app
from service.config import Settings
from tests.conftest import KERAS_WORD_INDEX, MODELS_DIR

# Small limits, so generated data reaches them.
SMALL_LIMITS = {"model_dir": MODELS_DIR, "max_reviews": 8, "max_review_chars": 2_000, "max_body_bytes": 50_000}
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(**SMALL_LIMITS)))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


# What the readiness routes answer while the models warm up (documented): /readyz a 503, the Open Inference
# Protocol's a 400 (its "not ready").
NOT_READY = {"/readyz": 503, "/v2/health/ready": 400, "/v2/models/{model_name}/ready": 400,
             "/v2/models/{model_name}/versions/{model_version}/ready": 400}
# A v2 inference body's shape and data must agree, which its JSON schema cannot say: a schema-valid body for a
# served model (a name the stateful tests take from /models) may well be a 400.
V2_INFER = ["/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"]


def assert_helpful(response, v2: bool = False) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and v2:  # the Open Inference Protocol's routes: {"error": "..."}
        assert list(response.json()) == ["error"] and response.json()["error"], response.text
    elif response.status_code >= 400:
        detail = response.json()["detail"]
        assert detail and isinstance(detail, list), "a 4xx must say what to fix, in the one error shape"
        assert all(error["msg"] and error["type"] and isinstance(error["loc"], list) for error in detail)


@schema.parametrize()
@FUZZ
def test_every_operation_conforms_and_never_fails(case):
    response = case.call()
    if response.status_code == NOT_READY.get(case.path):  # documented: warm-up not finished yet
        assert response.json()["ready"] is False
        # Every other check still runs; the answer is in the schema, so it is no server error or rejected request.
        case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance])
    else:
        assert_helpful(response, v2=case.path.startswith("/v2"))
        case.validate_response(response, excluded_checks=[positive_data_acceptance] if case.path in V2_INFER else [])


# The readiness routes are left out here (their documented answers during warm-up would count as failures), and
# v2 inference (see V2_INFER).
TestStateful = schema.exclude(path=[*NOT_READY, *V2_INFER]).as_state_machine().TestCase
TestStateful.settings = settings(max_examples=20, stateful_step_count=5, deadline=None,
                                 suppress_health_check=list(HealthCheck))

# ---- raw bodies and arbitrary text through the HTTP layer

client_context = TestClient(create_app(Settings(**SMALL_LIMITS)))  # its own app: schemathesis ends its lifespans


def setup_module():
    client_context.__enter__()


def teardown_module():
    client_context.__exit__(None, None, None)


@given(st.binary(max_size=300))
@FUZZ
def test_arbitrary_bytes_as_body_get_a_clear_4xx(body):
    response = client_context.post("/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert_helpful(response)


@given(st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=8))
@FUZZ
def test_arbitrary_unicode_reviews_are_scored_or_rejected_clearly(reviews):
    response = client_context.post("/predict", params={"model": "all"}, json={"reviews": reviews})
    assert_helpful(response)
    if all(review.strip() for review in reviews):
        assert response.status_code == 200
        for result in response.json()["results"]:
            assert len(result["predictions"]) == len(reviews)
    else:
        assert response.status_code == 422


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                      max_size=4),
                    max_leaves=12))
@FUZZ
def test_arbitrary_json_values_get_a_clear_answer(value):
    response = client_context.post("/predict", content=json.dumps({"reviews": value}),
                                   headers={"content-type": "application/json"})
    assert_helpful(response)


# ---- the tokenizer on hostile text

tokenizer = Tokenizer(load_word_index(KERAS_WORD_INDEX), num_words=10_000, max_len=500)
hostile_text = st.one_of(
    st.text(),                                                          # arbitrary Unicode
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"])),  # control and space characters
    st.text(st.sampled_from('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'), max_size=200),  # only punctuation
    st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=50),  # emoji
    st.builds(lambda word, n: word * n, st.text(min_size=1, max_size=5), st.integers(1, 20_000)),  # very long words
    st.lists(st.sampled_from(["movie", "фильм", "映画", "فيلم", "película", "🎬"]), max_size=50).map(" ".join),
)


@given(hostile_text)
@settings(max_examples=300, deadline=None)
def test_tokenizer_is_total_and_bounded(text):
    sequence = tokenizer.encode(text)
    assert sequence[0] == START and all(1 <= index < 10_000 for index in sequence)
    assert len(sequence) == len(text_to_words(text)) + 1
    (row,) = tokenizer.encode_batch([text])
    assert row.shape == (500,) and row.dtype == np.int32
    assert row[-min(500, len(sequence)):].tolist() == sequence[-500:]


@given(hostile_text)
@settings(max_examples=200, deadline=None)
def test_words_never_contain_filters_or_whitespace(text):
    for word in text_to_words(text):
        assert word and not any(char.isspace() for char in word)
        assert not set(word) & set('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~')
        assert word == word.lower()


ascii_text = st.one_of(
    st.text(st.characters(max_codepoint=127)),                         # any ASCII, control characters too
    st.lists(st.sampled_from(["Great", "movie", "isn't", "BAD", "<br />", "\x1c", "\x0b", "\r\n", "a-b", "..."]),
             max_size=60).map(" ".join),
)


non_ascii_text = st.one_of(
    st.text(),                                                          # any Unicode, lone surrogates too
    st.lists(st.sampled_from(["Café", "naïve", "«film»", "映画", "😀", "—", "\u00a0", "\u2028", "\u212a", "İ", "ß",
                              "Great", "isn't", "<br />", "a-b", "\x1c", "\ud800"]), max_size=60).map(" ".join),
)


def reference_encoding(text: str) -> list[int]:
    lookup = tokenizer._index.get
    return [START, *(lookup(word, OOV) for word in text_to_words(text))]


@given(ascii_text)
@settings(max_examples=300, deadline=None)
def test_the_ascii_fast_path_encodes_exactly_like_the_reference_rule(text):
    # encode() takes the bytes path for ASCII text; the str rule (text_to_words) is the reference.
    assert tokenizer.encode(text) == reference_encoding(text)


@given(non_ascii_text)
@settings(max_examples=300, deadline=None)
def test_the_utf8_path_encodes_exactly_like_the_reference_rule(text):
    assert tokenizer.encode(text) == reference_encoding(text)
    (row,) = tokenizer.encode_batch([text])
    sequence = reference_encoding(text)[-tokenizer.max_len:]
    assert row[tokenizer.max_len - len(sequence):].tolist() == sequence and not row[:-len(sequence)].any()


short_tokenizers = {max_len: Tokenizer(load_word_index(KERAS_WORD_INDEX), num_words=10_000, max_len=max_len)
                    for max_len in (1, 2, 5, 12)}


@given(st.one_of(ascii_text, non_ascii_text), st.sampled_from(sorted(short_tokenizers)))
@settings(max_examples=300, deadline=None)
def test_batches_keep_the_last_tokens_of_the_reference_sequence(text, max_len):
    (row,) = short_tokenizers[max_len].encode_batch([text])
    kept = reference_encoding(text)[-max_len:]
    assert row.tolist() == [0] * (max_len - len(kept)) + kept
