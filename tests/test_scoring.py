"""The scoring core on its own: no ASGI, no HTTP, fake models with a real tokenizer."""

import asyncio
import time

import numpy as np
import pytest

from artifacts.tokenizer import Tokenizer
from service.config import Settings
from service.scoring import (
    POSITIVE_THRESHOLD,
    InvalidInput,
    ModelUnavailable,
    ReviewScore,
    UnknownModelError,
    label_of,
    warnings_of,
)
from tests import fakes


def run_and_close(core, call):
    """``await call()`` on a fresh event loop, then close the core (its batchers drain)."""
    async def run():
        try:
            return await call()
        finally:
            await core.close()

    return asyncio.run(run())


def score(core, reviews, models=None):
    return run_and_close(core, lambda: core.score(reviews, models))


def names(result) -> list[str]:
    return [r.model for r in result.results]


def test_without_model_names_the_most_accurate_model_answers():
    core = fakes.core(fakes.model("a", accuracy=0.8), fakes.model("b", accuracy=0.9), fakes.model("c"))
    assert names(score(core, ["good"])) == ["b"]


@pytest.mark.parametrize(("requested", "expected"), [
    (["b", "a"], ["b", "a"]),
    (["a,b"], ["a", "b"]),
    (["b, a", "a"], ["b", "a"]),
    (["a", "a"], ["a"]),
    (["all"], ["a", "b", "c"]),
    (["a", "all"], ["a", "b", "c"]),
    ([], ["b"]),
])
def test_models_are_named_repeated_comma_separated_or_all_in_the_order_asked(requested, expected):
    core = fakes.core(fakes.model("a"), fakes.model("b", accuracy=0.9), fakes.model("c"))
    assert names(score(core, ["good"], requested)) == expected


def test_an_unknown_model_is_an_input_error_that_lists_the_valid_names():
    core = fakes.core(fakes.model("a"), fakes.model("b"))
    with pytest.raises(UnknownModelError) as raised:
        score(core, ["good"], ["a,nope"])
    assert raised.value.field == ("model",) and raised.value.unknown == ["nope"]
    assert "valid names: a, b (or 'all')" in raised.value.message


@pytest.mark.parametrize("requested", [[""], ["a,"], ["a", " "]])
def test_an_empty_model_name_is_an_input_error_that_names_the_default(requested):
    core = fakes.core(fakes.model("a"), fakes.model("b", accuracy=0.9))
    with pytest.raises(InvalidInput, match="empty model name; .* for the default model \\(b\\)") as raised:
        score(core, ["good"], requested)
    assert raised.value.field == ("model",)


def test_the_limits_name_the_field_and_the_setting():
    core = fakes.core(fakes.model("a"), settings=Settings(max_reviews=2, max_review_chars=10))
    with pytest.raises(InvalidInput, match="at most 2 per request \\(SENTIMENT_MAX_REVIEWS\\)") as too_many:
        score(core, ["a", "b", "c"])
    assert too_many.value.field == ("reviews",)
    with pytest.raises(InvalidInput, match="review 1 has 11 characters, at most 10") as too_long:
        score(core, ["good", "x" * 11])
    assert too_long.value.field == ("reviews", 1)


def test_labels_follow_the_one_threshold():
    assert POSITIVE_THRESHOLD == 0.5
    assert [label_of(s) for s in (0.0, 0.4999, 0.5, 1.0)] == ["negative", "negative", "positive", "positive"]
    core = fakes.core(fakes.model("a"))
    (result,) = score(core, ["good good bad", "bad awful", "good bad", "zzz"]).results
    assert result.scores == pytest.approx([2 / 3, 0.0, 0.5, 0.5])
    assert result.labels == ["positive", "negative", "positive", "positive"]


def test_each_review_says_how_many_words_the_model_read_and_knew_and_whether_it_was_cut():
    core = fakes.core(fakes.model("a"))
    long_review = " ".join(["good"] * 5 + ["zzz"] * 10)  # 15 words, 8 fit
    (result,) = score(core, ["good zzz film", "zzz", long_review]).results
    assert result.reviews() == [
        ReviewScore(score=0.5, label="positive", words_read=3, known_words=2, truncated=False),
        ReviewScore(score=0.5, label="positive", words_read=1, known_words=0, truncated=False),
        ReviewScore(score=0.5, label="positive", words_read=8, known_words=0, truncated=True),
    ]
    assert [review.warnings for review in result.reviews()] == [(), ("no_known_words",),
                                                                 ("no_known_words", "truncated")]


@pytest.mark.parametrize(("words", "known", "truncated", "expected"), [
    (10, 10, False, ()),
    (10, 5, False, ()),  # half known: no warning
    (10, 4, False, ("few_known_words",)),
    (1, 0, False, ("no_known_words",)),
    (0, 0, False, ("no_known_words",)),  # no word at all, e.g. only punctuation
    (500, 480, True, ("truncated",)),
    (500, 0, True, ("no_known_words", "truncated")),
    (500, 100, True, ("few_known_words", "truncated")),
])
def test_warnings_follow_from_how_the_review_was_read(words, known, truncated, expected):
    assert warnings_of(words, known, truncated) == expected


def test_the_counts_made_while_encoding_equal_the_counts_from_the_tokens():
    from artifacts.tokenizer import EncodedBatch

    reviews = ["good zzz film", "zzz", "!!!", " ".join(["good"] * 5 + ["zzz"] * 10), "great " * 8]
    encoded = fakes.tokenizer().encode_reviews(reviews)
    recounted = EncodedBatch(encoded.tokens, encoded.truncated)  # counts from the token array
    assert encoded.words_read().tolist() == recounted.words_read().tolist() == [3, 1, 0, 8, 8]
    assert encoded.known_words().tolist() == recounted.known_words().tolist() == [2, 0, 0, 0, 8]


def test_models_that_share_a_tokenizer_score_the_same_token_batch():
    seen = []

    def recording(tokens):
        seen.append(tokens)
        return fakes.share_of_positive_words(tokens)

    shared = fakes.tokenizer()
    core = fakes.core(fakes.model("a", recording, shared_tokenizer=shared),
                      fakes.model("b", recording, shared_tokenizer=shared),
                      fakes.model("c", recording))  # a tokenizer of its own
    result = score(core, ["good film", "bad"], ["all"])
    assert result.results[0].encoded is result.results[1].encoded
    assert result.results[2].encoded is not result.results[0].encoded
    assert all(np.array_equal(tokens, seen[0]) for tokens in seen)


def test_agreement_lists_the_reviews_on_which_the_labels_differ():
    core = fakes.core(fakes.model("a"), fakes.model("b", lambda tokens: np.full(len(tokens), 0.9, np.float32)))
    result = score(core, ["good", "bad", "awful good"], ["a", "b"])
    agreement = result.agreement
    assert (agreement.models, agreement.agree, agreement.disagree, agreement.disagreements) == (["a", "b"], 2, 1, [1])
    assert score(fakes.core(fakes.model("a")), ["good"]).agreement is None


def test_each_result_names_its_models_version():
    model = fakes.model("a")
    (result,) = score(fakes.core(model), ["good"]).results
    assert result.version == model.metadata.onnx_sha256[:12] == model.version


def broken(tokens):
    raise RuntimeError("onnxruntime exploded")


def slow(tokens):
    time.sleep(1.0)
    return np.full(len(tokens), 0.5, np.float32)


@pytest.mark.parametrize(("predict", "message"), [
    (broken, "model bad failed to score the reviews (RuntimeError); other models are unaffected"),
    (lambda tokens: np.full(len(tokens), np.nan, np.float32), "model bad returned invalid scores"),
    (lambda tokens: np.full(len(tokens), 1.5, np.float32), "model bad returned invalid scores"),
    (slow, "prediction took longer than 0.2 s (SENTIMENT_REQUEST_TIMEOUT_SECONDS)"),
])
def test_a_model_that_fails_is_unavailable_and_names_itself(predict, message):
    core = fakes.core(fakes.model("good"), fakes.model("bad", predict),
                      settings=Settings(request_timeout_seconds=0.2))
    with pytest.raises(ModelUnavailable) as raised:
        score(core, ["good"], ["bad"])
    assert raised.value.model == "bad" and message in raised.value.message
    assert names(score(fakes.core(fakes.model("good"), fakes.model("bad", predict)), ["good"], ["good"])) == ["good"]


def test_a_closed_core_refuses_new_work():
    core = fakes.core(fakes.model("a"))

    async def run():
        await core.close()
        await core.score(["good"])

    with pytest.raises(ModelUnavailable, match="model a is shutting down"):
        asyncio.run(run())


def test_long_requests_are_tokenized_off_the_event_loop_with_the_same_result():
    core = fakes.core(fakes.model("a"))
    reviews = ["good great " * 2_000, "bad " * 3_000]  # over INLINE_TOKENIZE_CHARS in all
    (result,) = score(core, reviews).results
    assert result.scores == [1.0, 0.0] and result.encoded.truncated.tolist() == [True, True]


@pytest.mark.parametrize("rule, chars, off_loop", [("keras", 5_000, False), ("keras_scopes_spelling", 5_000, True),
                                                   ("keras_scopes_spelling", 3_000, False)])
def test_a_spelling_tokenizer_goes_off_the_event_loop_sooner(monkeypatch, rule, chars, off_loop):
    import service.scoring

    threaded = []

    async def to_thread(function, *args):
        threaded.append(function)
        return function(*args)

    monkeypatch.setattr(service.scoring.asyncio, "to_thread", to_thread)
    spelling = Tokenizer(fakes.WORDS, fakes.NUM_WORDS, fakes.MAX_LEN, rule)
    core = fakes.core(fakes.model("a", shared_tokenizer=spelling))
    (result,) = score(core, ["grreat " * (chars // 7)]).results  # "grreat": 6 letters, one edit from "great"
    assert bool(threaded) == off_loop and spelling.spells == (rule != "keras")
    assert result.encoded.known_words()[0] == (fakes.MAX_LEN if spelling.spells else 0)  # truncated: no START


def test_the_predict_json_is_what_the_response_models_would_write():
    """/predict renders its JSON from plain dicts; it must be byte for byte the documented response."""
    from service.routes.predict import render
    from service.schemas import Agreement, ModelResult, Prediction, PredictResponse

    for requested in (["a"], ["a", "b"]):
        constant = fakes.model("b", lambda tokens: np.full(len(tokens), 0.1234567, np.float32))
        core = fakes.core(fakes.model("a"), constant)
        result = score(core, ["good film", "awful", "zzz great", "zzz", "good " * 9, "zzz qqq xxx good"], requested)
        expected = PredictResponse(
            results=[ModelResult(model=r.model, version=r.version, predictions=[
                Prediction(score=review.score, label=review.label, words=review.words_read,
                           known_words=review.known_words, truncated=review.truncated,
                           warnings=list(review.warnings)) for review in r.reviews()])
                for r in result.results],
            agreement=None if result.agreement is None else Agreement(**{
                key: getattr(result.agreement, key) for key in ("models", "agree", "disagree", "disagreements")}))
        assert render(result) == expected.model_dump_json().encode()


def explain(core, reviews, model=None):
    return run_and_close(core, lambda: core.explain(reviews, model))


def test_explanations_have_a_limit_of_their_own():
    core = fakes.core(fakes.linear_model("a"), settings=Settings(max_reviews=10, explain_max_reviews=2))
    with pytest.raises(InvalidInput, match="at most 2 per request \\(SENTIMENT_EXPLAIN_MAX_REVIEWS\\)"):
        explain(core, ["good"] * 3)
    assert len(score(fakes.core(fakes.linear_model("a"), settings=Settings(explain_max_reviews=2)),
                     ["good"] * 3).results[0].scores) == 3


def test_an_explanation_comes_from_one_model_the_default_without_a_name():
    core = fakes.core(fakes.linear_model("a", accuracy=0.7), fakes.bag_model("b", accuracy=0.9))
    assert core.resolve_one(None).name == "b" and core.resolve_one("a").name == "a"
    for requested, message in [("a,b", "one model at a time"), ("all", "one model at a time"),
                               ("a, a", "one model at a time"), ("", "empty model name"), (",", "empty model name")]:
        with pytest.raises(InvalidInput, match=message) as raised:
            core.resolve_one(requested)
        assert raised.value.field == ("model",)
    with pytest.raises(UnknownModelError):
        core.resolve_one("nope")


def test_an_explanation_scores_and_labels_like_a_prediction():
    reviews = ["good film", "awful zzz", "zzz", "great " * 12]
    for model in (fakes.linear_model("a"), fakes.bag_model("a")):
        predicted = score(fakes.core(model), reviews).results[0].reviews()
        explained = explain(fakes.core(model), reviews).explanations
        assert [(e.score, e.label, e.words_read, e.known_words, e.truncated, e.warnings) for e in explained] == [
            (p.score, p.label, p.words_read, p.known_words, p.truncated, p.warnings) for p in predicted]
