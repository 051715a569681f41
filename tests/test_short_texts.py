"""The short-text bag's training sentences (training/short_texts.py)."""

import numpy as np
import pytest

from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import load_word_index
from tests.conftest import MODELS_DIR
from training import presets, short_texts
from training.cad import CadPair, Review

REVIEWS = ["Great cast. Dull plot. A fine ending.", "Awful. Truly awful.<br /><br />Skip it.",
           "Loved it. Every minute of it. The score too. Go."]
LABELS = np.array([1, 0, 1], np.float32)
PAIR = CadPair("p1", Review("The film was boring. The cast tried.", 0),
               Review("The film was never boring. The cast tried.", 1), train_index=0)


def test_the_fitting_side_is_every_sentence_of_the_fitted_reviews_and_the_editors_sentences_with_their_own_labels():
    made = short_texts.sentence_set(REVIEWS, LABELS, np.array([2]), [PAIR], cad_copies=2)
    assert made.fit_texts == ["Great cast.", "Dull plot.", "A fine ending.", "Awful.", "Truly awful.", "Skip it.",
                              "The film was boring.", "The film was never boring.",
                              "The film was boring.", "The film was never boring."]
    assert made.fit_labels.tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 0, 1]
    # a held-out review validates with its middle sentences only: its first and last are the validation snippets
    assert made.validation_texts == ["Every minute of it.", "The score too."]
    assert made.validation_labels.tolist() == [1, 1]


def test_a_refit_trains_the_given_epochs_and_an_epoch_choice_needs_validation_sentences():
    config = presets.TrainingConfig(family="bag", num_words=300, max_len=30, embedding_dim=4, ngram_orders=(2,),
                                    ngram_buckets_log2=6, ngram_dim=3, optimizer="adam", learning_rate=1e-2,
                                    epochs=3, batch_size=4)
    tokenizer = Tokenizer(load_word_index(MODELS_DIR / "vocab_20000.json"), 300, 30)
    nothing_held = short_texts.sentence_set(REVIEWS, LABELS, np.array([], np.int64), [PAIR], cad_copies=1)
    with pytest.raises(ValueError, match="no validation sentences"):
        short_texts.train("short", config, 5, tokenizer, nothing_held, verbose=0)
    refit = short_texts.train("short", config, 5, tokenizer, nothing_held, verbose=0, epochs=2)
    assert (refit.best_epoch, refit.best_val_accuracy) == (2, None)
    chosen = short_texts.train("short", config, 5, tokenizer,
                               short_texts.sentence_set(REVIEWS, LABELS, np.array([2]), [PAIR], 1), verbose=0)
    assert 1 <= chosen.best_epoch <= 3 and chosen.best_val_accuracy in (0.0, 0.5, 1.0)
