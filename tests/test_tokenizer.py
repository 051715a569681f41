import numpy as np
import pytest

from artifacts.tokenizer import KERAS_FILTERS, OOV, START, Tokenizer, text_to_words
from artifacts.vocabulary import load_word_index, save_word_index, vocabulary_subset


@pytest.fixture(scope="module")
def tokenizer(imdb_word_index):
    return Tokenizer(imdb_word_index, num_words=10_000, max_len=500)


def test_known_words_get_rank_plus_three(tokenizer):
    # ranks in the Keras IMDB word index: the=1, and=2, a=3, of=4, br=7, movie=17, film=19, it's=42, great=84
    assert tokenizer.encode("the and a of br movie film it's great") == [START, 4, 5, 6, 7, 10, 20, 22, 45, 87]


def test_html_line_break_becomes_the_word_br(tokenizer):
    assert text_to_words("Good.<br /><br />Bad") == ["good", "br", "br", "bad"]
    assert tokenizer.encode("<br />") == [START, 10]


def test_every_keras_filter_is_a_separator_and_the_apostrophe_is_kept():
    text = "".join(f"a{separator}" for separator in KERAS_FILTERS) + "z"
    assert text_to_words(text) == ["a"] * len(KERAS_FILTERS) + ["z"]
    assert text_to_words("Don't stop: it's O'Brien's!") == ["don't", "stop", "it's", "o'brien's"]


def test_case_is_folded(tokenizer):
    assert tokenizer.encode("GREAT Movie") == tokenizer.encode("great movie")


def test_the_word_index_is_the_keras_imdb_index_up_to_rank_19996(imdb_word_index):
    # models/vocab_20000.json: every rank from 1 to 19,996 once, and the Keras file's words at the ranks checked
    assert sorted(imdb_word_index.values()) == list(range(1, 19_997))
    assert [imdb_word_index[word] for word in ("the", "edged", "retains", "humanism")] == [1, 9_996, 9_997, 19_996]


def test_unknown_and_rare_words_are_oov(tokenizer, imdb_word_index):
    rare = next(word for word, rank in imdb_word_index.items() if rank == 15_000)  # index 15,003: beyond 10,000
    assert Tokenizer(imdb_word_index, 20_000, 10).encode(rare) == [START, 15_003]  # a known word, only rare
    assert tokenizer.encode(f"zzqqxxnotaword {rare}") == [START, OOV, OOV]


def test_vocabulary_boundary_is_num_words(imdb_word_index):
    last_kept = next(word for word, rank in imdb_word_index.items() if rank == 9_996)  # index 9,999
    first_dropped = next(word for word, rank in imdb_word_index.items() if rank == 9_997)  # index 10,000
    assert Tokenizer(imdb_word_index, 10_000, 10).encode(f"{last_kept} {first_dropped}") == [START, 9_999, OOV]


def test_non_ascii_text_is_kept_whole():
    assert text_to_words("Café — naïve «film» 映画 😀") == ["café", "—", "naïve", "«film»", "映画", "😀"]


def test_other_whitespace_splits_words():
    assert text_to_words("one\ttwo\nthree\r\nfour\u00a0five") == ["one", "two", "three", "four", "five"]


def test_empty_text_is_just_the_start_token(tokenizer):
    assert tokenizer.encode("") == [START]
    batch = tokenizer.encode_batch(["", "!!!"])
    assert batch.shape == (2, 500) and batch.dtype == np.int32
    assert batch[:, -1].tolist() == [START, START] and not batch[:, :-1].any()


def test_short_reviews_are_padded_at_the_front(tokenizer):
    (row,) = tokenizer.encode_batch(["great movie"])
    assert row[-3:].tolist() == [START, 87, 20]
    assert not row[:-3].any()


def test_long_reviews_keep_their_last_tokens(tokenizer):
    words = ["the"] * 600 + ["great", "movie"]
    (row,) = tokenizer.encode_batch([" ".join(words)])
    assert row.tolist() == [4] * 498 + [87, 20]  # the start token and the first 102 words are cut


@pytest.mark.parametrize("max_len", [1, 3, 5, 12])
def test_padding_and_truncation_match_keras_pad_sequences(imdb_word_index, max_len):
    import keras

    texts = ["", "great", "a great film", "the movie was not good at all", "one two three four five six seven",
             " ".join(["film"] * 11), "Café naïve «film» was great"]
    short = Tokenizer(imdb_word_index, 10_000, max_len)
    expected = keras.utils.pad_sequences([short.encode(text) for text in texts], maxlen=max_len)
    np.testing.assert_array_equal(short.encode_batch(texts), expected)


def test_vocabulary_subset_round_trips(tmp_path, imdb_word_index):
    subset = vocabulary_subset(imdb_word_index, 10_000)
    assert len(subset) == 9_996 and max(subset.values()) == 9_996
    checksum = save_word_index(subset, tmp_path / "vocab.json")
    assert len(checksum) == 64
    reloaded = load_word_index(tmp_path / "vocab.json")
    assert Tokenizer(reloaded, 10_000, 500).encode("a great film") == [START, 6, 87, 22]


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "non-empty JSON object"),
    ('{"word": "one"}', "positive integer"),
])
def test_bad_vocabulary_files_are_named(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_word_index(path)
