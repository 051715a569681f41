"""Exploration for issue #16, robust models: variants trained once (seed 1337; a round's finalists also with a
second seed, and two that were level on two seeds with a third) and judged on the validation split and the
counterfactual dev pairs only. The test set, the checklist suite and the snippets are not touched here; the winner
becomes a preset in ``training/presets.py`` and is evaluated once by the pipeline.

    python -m training.explore_robust [--only NAME ...] [--seed N] [--out models/robust_experiments.json]

Every variant trains as the pipeline trains it (``training.pipeline.training_set``: with counterfactual copies,
the dev pairs' originals are left out of the training reviews). After each epoch the run is scored on its
validation split and on the dev pairs; the figures of the epoch with the best validation accuracy (the epoch the
pipeline keeps) are recorded, with the accuracy on the validation reviews' snippets (their first and last
sentence alone, labelled by their review: the short texts people type, from reviews no run fitted on). The rule
that picks the preset: the best mean of validation accuracy, dev edited-review accuracy and validation snippet
accuracy, the three kinds of review the product must read well. (The first variants were compared on the first two;
``bag_scopes_cad5_made3``, their winner, was run again to record its snippet figure, and reproduced the shipped run's
epoch and validation accuracy exactly.) A variant run with more seeds (``--seed``: the same variant with another
weight initialisation, shuffle and validation split; the figures under ``other_seeds``) is judged by the mean of its
seeds' scores (``variant_score``): round four's two best were 0.0016 apart on one seed each. A variant's other
seeds run after its first one is recorded in ``--out`` (refused before anything is read otherwise). Two runs were
stopped by hand once behind for three epochs; their records say so and were rebuilt from the run's log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import load_word_index
from training import presets
from training.cad import CadPair
from training.calibrate import held_out_indices
from training.crops import edited_sentences
from training.data import DataError, dataset_path, load_imdb, require_data_file, word_index_path
from training.robustness import Snippets, cad_figures, right, snippets

BAG = presets.TUNED["bigram_bag"]
SCOPES = {"tokenizer": "keras_scopes"}
SPELLING = {"tokenizer": "keras_scopes_spelling"}
ACROSS = {"tokenizer": "keras_scopes_spelling_across"}
FOCUS = {"tokenizer": "keras_scopes_spelling_focus"}
FOCUS_CUELESS = {"tokenizer": "keras_scopes_spelling_focus_cueless"}
FOCUS_ACROSS = {"tokenizer": "keras_scopes_spelling_focus_across"}
FOCUS_ACROSS_CUE = {"tokenizer": "keras_scopes_spelling_focus_across_cue"}
MADE3 = {"counterfactual_copies": 5, "made_counterfactuals": True, "made_min_share": 0.03, "epochs": 12}

# The variants run for the robust preset (models/robust_experiments.json). Earlier scratch runs (not recorded
# here; a split like this one, six epochs): the counterfactual pairs alone raised dev edited accuracy from 0.53
# to 0.76 and, with negation scopes, to 0.80 (validation 0.916), short of the 0.85 target; the reviews made from
# the editors' swaps were what crossed it.
CANDIDATES: dict[str, presets.TrainingConfig] = {
    "bag_scopes_cad5_made": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True, epochs=12),
    "bag_scopes_cad5_made3": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True,
                                     made_min_share=0.03, epochs=12),
    "bag_scopes_cad5_made5": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True,
                                     made_min_share=0.05, epochs=12),
    # Short texts (training/crops.py): sentence crops of every training review. Crops raised validation accuracy
    # early but cost dev edited accuracy (0.78 to 0.82 against 0.87) and gained no validation snippet accuracy.
    "bag_scopes_cad5_made3_crops2": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True,
                                            made_min_share=0.03, sentence_crops=2, epochs=12),
    "bag_scopes_cad5_made3_crops1": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True,
                                            made_min_share=0.03, sentence_crops=1, epochs=12),
    # The same with the scoped rows built from the plain ones (training/models.py ScopedEmbedding): behind without
    # the map on validation and dev edited accuracy at each epoch.
    "bag_scopes_cad5_made3_crops2_prior": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True,
                                                  made_min_share=0.03, sentence_crops=2, scope_prior=True, epochs=12),
    # Round three, for short reviews. A mean gives each word 1/n of a short review, so its plain words ("the", "was",
    # "script") decide it. Words weighed by a learned salience (training/models.py WeightedMean; with the scoped rows
    # built from the plain ones it lagged on validation accuracy, 0.8845 at its best epoch), or an L1 price per
    # occurrence on each word's row (MaskedMean's l1), with misspelt words read as the word they misspell
    # (tokenizer rule keras_scopes_spelling, artifacts/spelling.py). The two L1 runs counted the penalty in their
    # validation loss too (MaskedMean added it at every call then), which early stopping watches: they ran 8 and 10
    # epochs; their epochs were still chosen on validation accuracy, which the penalty does not touch.
    "bag_scopes_cad5_made3_salience_prior": replace(BAG, **SCOPES, **MADE3, bag_pooling="salience", scope_prior=True),
    "bag_spelling_cad5_made3_salience": replace(BAG, **SPELLING, **MADE3, bag_pooling="salience"),
    "bag_spelling_cad5_made3_l1_1e-2": replace(BAG, **SPELLING, **MADE3, term_l1=0.01),
    "bag_spelling_cad5_made3_l1_4e-2": replace(BAG, **SPELLING, **MADE3, term_l1=0.04),
    # Round four, for negated complaints ("never tedious", "nothing boring"): each made review also made by
    # negating the swapped words instead of replacing them (training/cad.py flipped's negate_every).
    "bag_spelling_cad5_made3_salience_negations": replace(BAG, **SPELLING, **MADE3, bag_pooling="salience",
                                                          made_negations="copies"),
    # ... and, for "The plot was dull; however, the film is good", a contrast that opens a sentence outweighing the
    # sentence before it (tokenizer rule keras_scopes_spelling_across), with and without the negated reviews.
    "bag_across_cad5_made3_salience_negations": replace(BAG, **ACROSS, **MADE3, bag_pooling="salience",
                                                        made_negations="copies"),
    "bag_across_cad5_made3_salience": replace(BAG, **ACROSS, **MADE3, bag_pooling="salience"),
    # The negated copies won on one seed (0.8369 against 0.8353) and went through the pipeline: test accuracy 0.8964
    # against 0.9017. Their half point of validation accuracy lost for the dev edited gain led to two more ways, run
    # after that test figure was seen: negated copies of the negative reviews only, whose complaints IMDB teaches
    # wrongly when negated, and no copies but every second swapped word negated. Neither beat 0.8369; the two best
    # were then run with a second seed (--seed 1), and on the mean of both seeds the variant without negations
    # stays ahead (0.8382 against 0.8361): one seed moved its score by 0.006.
    "bag_spelling_cad5_made3_salience_complaint_negations": replace(
        BAG, **SPELLING, **MADE3, bag_pooling="salience", made_negations="complaint_copies"),
    "bag_spelling_cad5_made3_salience_alternate_negations": replace(
        BAG, **SPELLING, **MADE3, bag_pooling="salience", made_negations="alternate"),
    # Round five, for short texts with the sentiment they say: the sentences the editors of the training pairs
    # changed (training/crops.py edited_sentences; 19,137 of them, median 16 words), each labelled by its review.
    # Unlike sentence crops of IMDB reviews, labelled by a whole review, their label is the edit's. Behind the
    # shipped variant on seed 1337 by nearly twice what a seed moves a score (its record notes the version it ran).
    "bag_spelling_cad5_made3_salience_sentences": replace(BAG, **SPELLING, **MADE3, bag_pooling="salience",
                                                          counterfactual_sentences=1),
    # Round six, for negated complaints again: a negation read on its focus alone (tokenizer rule
    # keras_scopes_spelling_focus), so that "never dull" and "never seen such a dull film" read apart. With the clause
    # as the scope, a review with a negated "dull" is positive 37 times in 100; on its focus, 73. Ahead of the shipped
    # variant on both seeds (mean 0.8410 against 0.8382): the robust_bag preset since.
    "bag_focus_cad5_made3_salience": replace(BAG, **FOCUS, **MADE3, bag_pooling="salience"),
    # Round seven: the same with the word that opens a negation read as padding (keras_scopes_spelling_focus_cueless),
    # so that a negation is read on its focus alone and "nothing" has no row of its own that says "negative review".
    # Behind round six's variant on both seeds (mean 0.8387 against 0.8410).
    "bag_focus_cueless_cad5_made3_salience": replace(BAG, **FOCUS_CUELESS, **MADE3, bag_pooling="salience"),
    # Round eight, for contrasts ("The music was awful, but the movie was good"): the rows a contrast outweighs pull
    # as hard as plain ones ("bad" outweighed -21.0, plain -22.7), since in IMDB's long reviews the words before a
    # "but" say as much as those after it. Round six's variant with 4,000 texts that join two sentences the editors
    # changed, of opposite labels, by a contrast (training/crops.py contrast_joins), labelled as English reads them.
    # Behind round six's variant on both seeds (mean 0.8387 against 0.8410): the validation snippets lose.
    "bag_focus_cad5_made3_salience_joins": replace(BAG, **FOCUS, **MADE3, bag_pooling="salience",
                                                   contrast_joins=4000),
    # ... and the same with a contrast that opens a sentence outweighing the sentence before it, as round four's rule
    # read it ("The plot was dull; however, the film is good"), beside negations read on their focus
    # (keras_scopes_spelling_focus_across). Further behind (mean 0.8349).
    "bag_focus_across_cad5_made3_salience_joins": replace(BAG, **FOCUS_ACROSS, **MADE3, bag_pooling="salience",
                                                          contrast_joins=4000),
    # Round nine, for the word that opens a negation ("nothing", "not", "wasn't"), which IMDB reads as a sign of a
    # negative review: round four's negated made reviews again ("boring" -> "not boring", made_negations="copies"),
    # with an inserted "not" negating only the word it stands before, as the focus rule reads it. Positive made
    # reviews then hold as many negations as negative ones. Behind round six's variant on both seeds (mean 0.8400).
    "bag_focus_cad5_made3_salience_negations": replace(BAG, **FOCUS, **MADE3, bag_pooling="salience",
                                                       made_negations="copies"),
    # Round ten, for contrasts again, in the model instead of the data: a word a contrast outweighs read as the word
    # itself with a fraction of its weight (training/models.py Conceded, ConcessionOffset; a prior from English, "A, but
    # B" reads mostly as B) instead of rows of its own that IMDB teaches to pull as hard. A quarter first (mean 0.8425
    # over two seeds against round six's 0.8410), then a tenth, half and the whole weight on seed 1337 (0.8418, 0.8455,
    # 0.8391 against a quarter's 0.8440) and half on seed 1: half, mean 0.8432, is the robust_bag preset since.
    "bag_focus_cad5_made3_salience_conceded": replace(BAG, **FOCUS, **MADE3, bag_pooling="salience",
                                                      concession_weight=0.25),
    "bag_focus_cad5_made3_salience_conceded_0.1": replace(BAG, **FOCUS, **MADE3, bag_pooling="salience",
                                                          concession_weight=0.1),
    "bag_focus_cad5_made3_salience_conceded_0.5": replace(BAG, **FOCUS, **MADE3, bag_pooling="salience",
                                                          concession_weight=0.5),
    "bag_focus_cad5_made3_salience_conceded_1": replace(BAG, **FOCUS, **MADE3, bag_pooling="salience",
                                                        concession_weight=1.0),
    # Round eleven, for both failures at once: round ten's shipped variant with the word that opens a negation read
    # as padding (round seven's keras_scopes_spelling_focus_cueless), so that neither a conceded complaint nor a
    # "nothing" in "nothing boring about it" pulls towards a negative review as hard as before. Behind round ten's
    # variant on both seeds (0.8421 and 0.8381, mean 0.8401 against 0.8432): dev edited accuracy loses on both.
    "bag_focus_cueless_cad5_made3_salience_conceded_0.5": replace(BAG, **FOCUS_CUELESS, **MADE3,
                                                                  bag_pooling="salience", concession_weight=0.5),
    # Round twelve, for contrasts that open a sentence ("The plot was dull; however, the film is good", "The cast is
    # great. But the film is dull"): round ten's shipped variant with such a contrast outweighing the sentence before
    # it (keras_scopes_spelling_focus_across), which the conceded weight then reads at half. In round eight the across
    # rule went with contrast joins, whose rows of their own it taught; here the conceded words share the plain rows.
    # Ahead of round ten's variant on the mean of both seeds (0.8450 and 0.8436, mean 0.8443 against 0.8432; behind
    # on seed 1337 by 0.0005, ahead on seed 1 by 0.0027): the robust_bag preset since. A third seed (2), run beside
    # round fourteen's: 0.8455, mean 0.8447.
    "bag_focus_across_cad5_made3_salience_conceded_0.5": replace(BAG, **FOCUS_ACROSS, **MADE3,
                                                                 bag_pooling="salience", concession_weight=0.5),
    # Round thirteen: round twelve's variant with a conceded word at a quarter of its weight. Across sentences more
    # of a review is conceded (the sentence before a "But ..." or "However ..." sentence), so the weight that did best
    # with the within-sentence rule is tried again under this one; with that rule a quarter and a half were closer
    # than a seed moves a score (means 0.8425 and 0.8432). Behind round twelve's variant on both seeds (0.8430 and
    # 0.8408, mean 0.8419 against 0.8443): not run through the pipeline.
    "bag_focus_across_cad5_made3_salience_conceded_0.25": replace(BAG, **FOCUS_ACROSS, **MADE3,
                                                                  bag_pooling="salience", concession_weight=0.25),
    # Round fourteen: round twelve's variant with the word that opens a negation read as a conceded word
    # (keras_scopes_spelling_focus_across_cue), at half its weight, between round twelve's whole weight and round
    # eleven's padding (whose dev edited accuracy fell): "nothing" in "nothing boring about it" says less, the negated
    # "boring" more. Level with round twelve's variant on seed 1337 and behind on seed 1 (0.8450 and 0.8431, mean
    # 0.8441 against 0.8443), so both ran a third seed: 0.8423 against 0.8455, means 0.8435 against 0.8447 (dev edited
    # accuracy falls, as with the cue read as padding). Not run through the pipeline.
    "bag_focus_across_cue_cad5_made3_salience_conceded_0.5": replace(BAG, **FOCUS_ACROSS_CUE, **MADE3,
                                                                     bag_pooling="salience", concession_weight=0.5),
    # Round fifteen, for the words IMDB seldom uses: round twelve's variant with the mean valence of the review's
    # words in VADER's lexicon as one more feature (training/lexicon.py, lexicon_prior), so a rated word ("loathed",
    # word 18,414 of 20,000) says what its raters said however seldom IMDB uses it; negated words turned by VADER's
    # own factor, conceded ones at the conceded weight. Run on seeds 1337, 1 and 2, decided on before it ran, since
    # round twelve's variant has three: 0.8453, 0.8436 and 0.8449, mean 0.8446 against round twelve's 0.8447 (0.8450,
    # 0.8436, 0.8455): level on every seed, behind on the mean by 0.0001, so the rule keeps round twelve's. The output
    # layer makes little of the feature: each seed's figures are within 0.001 of round twelve's on the same seed.
    # Not run through the pipeline.
    "bag_focus_across_cad5_made3_salience_conceded_0.5_lexicon": replace(
        BAG, **FOCUS_ACROSS, **MADE3, bag_pooling="salience", concession_weight=0.5, lexicon_prior=True),
    # Round sixteen, for the contrasts a conceded weight does not settle: round twelve's variant with the conceded
    # words' pull on the logit clipped to half the other words' pull (concession_cap, training/models.py
    # CappedConcession), so that "The music was awful, but the movie was good." reads as "good" tempered, not as
    # "awful" at half its weight (-12.4 against +3.9). Run on seeds 1337, 1 and 2, decided on before it ran: 0.8386,
    # 0.8405 and 0.8402, mean 0.8398 against round twelve's 0.8447 (0.8450, 0.8436, 0.8455): behind on every seed, dev
    # edited accuracy most (0.898, 0.898, 0.890 against 0.910, 0.906, 0.898). Not run through the pipeline.
    "bag_focus_across_cad5_made3_salience_conceded_0.5_cap_0.5": replace(
        BAG, **FOCUS_ACROSS, **MADE3, bag_pooling="salience", concession_weight=0.5, concession_cap=0.5),
    # Round seventeen, for the negations a word and its focus do not settle ("couldn't take my eyes off", "no one
    # should miss", "wasn't a single dull moment"): round twelve's variant with hashed trigrams beside the bigrams
    # (2**20 buckets of 8 dimensions each, as the bigrams have), so that a run of three words can have a row. Behind
    # round twelve's variant on both seeds (0.8421 and 0.8390, mean 0.8405 against 0.8443 on the same two): validation
    # accuracy falls (0.8978 and 0.9034 against 0.9054 and 0.9058), and the trigrams' 9.4 million weights would have
    # nearly doubled the export. Not run through the pipeline.
    "bag_focus_across_cad5_made3_salience_conceded_0.5_trigrams": replace(
        BAG, **FOCUS_ACROSS, **MADE3, bag_pooling="salience", concession_weight=0.5, ngram_orders=(2, 3)),
    # Round eighteen, for short texts in a model of their own: round twelve's variant for texts of more than 40
    # words, and for the others a second bag of the same kind trained on every sentence of the fitting reviews
    # (labelled by its review) and the editors' changed sentences eight times (training/short_texts.py), the graph
    # choosing by length (training/models.py routed). The whole-review bag trains and reads long reviews as round
    # twelve's does, so validation and dev edited accuracy hardly move (no dev review has fewer than 33 words) and the
    # short texts are read by a model fitted to them. Screened first with a scratch script on seed 1337 (README): 40
    # words, where a longer route began to cost dev edited accuracy, and the editors' sentences eight times, where
    # twice had read the dev pairs' changed sentences worse than round twelve's model (0.750 against 0.770).
    "bag_focus_across_cad5_made3_salience_conceded_0.5_short40": replace(
        BAG, **FOCUS_ACROSS, **MADE3, bag_pooling="salience", concession_weight=0.5, short_text_words=40,
        short_text_cad_sentences=8),
}

log = logging.getLogger("training.explore_robust")


def choice_score(figures: dict) -> float:
    """The rule's score of one run: the mean of its validation, dev edited and validation snippet accuracies."""
    return (figures["best_val_accuracy"] + figures["cad_dev_edited"] + figures["val_snippets"]) / 3


def variant_score(record: dict) -> float:
    """A variant's score: the mean of its runs' choice scores (one run per seed)."""
    scores = [record["choice_score"], *(run["choice_score"] for run in record.get("other_seeds", {}).values())]
    return sum(scores) / len(scores)


def dev_figures(model, tokenizer: Tokenizer, pairs: list[CadPair]) -> dict[str, float]:
    """Accuracy on the dev pairs' originals and edited copies, and the share of pairs with both right."""
    original, edited = (model.predict(tokenizer.encode_batch(texts), verbose=0).ravel()
                        for texts in ([p.original.text for p in pairs], [p.edited.text for p in pairs]))
    return cad_figures(pairs, original, edited)


def snippet_accuracy(model, tokenizer: Tokenizer, cut: Snippets) -> float:
    """Accuracy on the first and on the last sentences, averaged."""
    return float(np.mean([right(model.predict(tokenizer.encode_batch(texts), verbose=0).ravel(), cut.labels).mean()
                          for texts in (cut.first, cut.last)]))


def sentence_accuracy(model, tokenizer: Tokenizer, pairs: list[CadPair]) -> float:
    """Accuracy on the sentences the dev pairs' editors changed, each with its own review's label (before or after
    the edit): short texts labelled by what they say, where the snippets carry their whole review's label."""
    changed = edited_sentences(pairs)
    scores = model.predict(tokenizer.encode_batch([review.text for review in changed]), verbose=0).ravel()
    return float(right(scores, [review.label for review in changed]).mean())


def routed_figures(name: str, config: presets.TrainingConfig, run, train, held_out: np.ndarray, cad: dict,
                   tokenizer: Tokenizer, validation_snippets: Snippets, word_index: dict[str, int]) -> dict:
    """With ``short_text_words``: the short-text bag trained beside ``run``'s whole-review bag (on the sentences of
    the reviews it fitted on, its epoch chosen on the middle sentences of those it held out), the two joined, and
    the routed model's figures: validation accuracy on the held-out reviews, the dev pairs' figures, the validation
    snippets and the dev pairs' changed sentences; with the short-text bag's own record."""
    from training import models, short_texts

    short_config = config.short_texts
    sentences = short_texts.sentence_set(train.texts, train.labels, held_out, cad["train"].pairs,
                                         config.short_text_cad_sentences)
    short_tokenizer = Tokenizer(word_index, short_config.num_words, short_config.max_len, short_config.tokenizer)
    short = short_texts.train(f"{name}_short_texts", short_config, run.seed, short_tokenizer, sentences, 2)
    routed = models.assemble(name, config, run.model, short.model)
    held_scores = routed.predict(tokenizer.encode_batch([train.texts[i] for i in held_out]), verbose=0).ravel()
    return {"seed": run.seed, "best_epoch": run.best_epoch,
            "best_val_accuracy": float(right(held_scores, train.labels[held_out].astype(int)).mean()),
            **dev_figures(routed, tokenizer, cad["dev"].pairs),
            "val_snippets": snippet_accuracy(routed, tokenizer, validation_snippets),
            "cad_dev_sentences": sentence_accuracy(routed, tokenizer, cad["dev"].pairs),
            "short_texts": {"words": config.short_text_words, "best_epoch": short.best_epoch,
                            "validation_sentences_accuracy": short.best_val_accuracy,
                            "fit_sentences": len(sentences.fit_texts),
                            "validation_sentences": len(sentences.validation_texts), "seconds": short.seconds}}


def per_epoch_measure(keras, tokenizer: Tokenizer, pairs: list[CadPair], validation_snippets: Snippets,
                      into: list[dict]):
    """A Keras callback that appends each epoch's validation accuracy, dev pair figures and validation snippet
    accuracy to ``into``."""

    class PerEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            into.append({"val_accuracy": float(logs["val_accuracy"]), **dev_figures(self.model, tokenizer, pairs),
                         "val_snippets": snippet_accuracy(self.model, tokenizer, validation_snippets)})
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{key} {value:.4f}" for key, value in into[-1].items()))

    return PerEpoch()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.explore_robust", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/robust_experiments.json"))
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    parser.add_argument("--seed", type=int, help="run with this seed instead of the variant's own (its first), and "
                        "record the run under the variant's other_seeds")
    args = parser.parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.seed is not None:
        # Checked before the data is read and anything trained: a run with another seed is recorded beside its
        # variant's first, so a variant without one would be trained for nothing.
        unrecorded = [name for name in args.only or CANDIDATES
                      if args.seed != CANDIDATES[name].seeds[0] and name not in results]
        if unrecorded:
            print(f"error: run {', '.join(unrecorded)} with its own seed first (no record in {args.out})",
                  file=sys.stderr)
            return 2
    from training import pipeline

    try:
        data = require_data_file(dataset_path())
        dataset = load_imdb(data)
        word_index = load_word_index(require_data_file(word_index_path()))
        cad = pipeline.load_counterfactual(dataset, data)
        if cad is None:
            raise DataError("the counterfactual pairs (cad/) are not in the data folder")
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # Keras and TensorFlow are imported only from here on, after the cheap checks.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training import fit

    reviews = pipeline.sample_reviews(dataset, None)
    for name in args.only or CANDIDATES:
        config = CANDIDATES[name]
        train = pipeline.training_set(reviews, config, cad)
        tokenizer = Tokenizer(word_index, config.num_words, config.max_len, config.tokenizer)
        x_train = tokenizer.encode_batch(train.texts)
        extra = ((tokenizer.encode_batch(train.extra_texts), train.extra_labels, train.extra_sources)
                 if train.extra_texts else None)
        per_epoch: list[dict] = []
        seed = config.seeds[0] if args.seed is None else args.seed
        held_out = held_out_indices(len(train.texts), seed, fit.VALIDATION_SPLIT)
        validation_snippets = snippets([train.texts[i] for i in held_out], train.labels[held_out].astype(int))
        measure = per_epoch_measure(keras, tokenizer, cad["dev"].pairs, validation_snippets, per_epoch)
        started = time.perf_counter()
        run = fit.train_once(name, config.whole_reviews, seed, x_train, train.labels, 2, extra, [measure], word_index)
        best = per_epoch[run.best_epoch - 1]
        figures = {"seed": run.seed, "best_epoch": run.best_epoch, "best_val_accuracy": run.best_val_accuracy,
                   **{k: v for k, v in best.items() if k != "val_accuracy"}}
        if config.short_text_words is not None:  # the rule judges the routed model; the whole-review bag's kept
            whole = {**figures, "cad_dev_sentences": sentence_accuracy(run.model, tokenizer, cad["dev"].pairs)}
            figures = {**routed_figures(name, config, run, train, held_out, cad, tokenizer, validation_snippets,
                                        word_index), "whole_reviews": {**whole, "choice_score": choice_score(whole)}}
        record = {**figures, "choice_score": choice_score(figures), "per_epoch": per_epoch,
                  "seconds": round(time.perf_counter() - started, 1)}
        if seed == config.seeds[0]:
            earlier = results.get(name, {})
            results[name] = {"config": config.to_dict(), **record}
            if "other_seeds" in earlier:  # a rerun of the first seed keeps the other seeds' runs
                results[name]["other_seeds"] = earlier["other_seeds"]
        else:
            results[name].setdefault("other_seeds", {})[str(seed)] = record
        log.info("%s: epoch %d, validation %.4f, dev edited %.4f, pairs %.4f, validation snippets %.4f", name,
                 run.best_epoch, figures["best_val_accuracy"], figures["cad_dev_edited"],
                 figures["cad_dev_pair_consistency"], figures["val_snippets"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
