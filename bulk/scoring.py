"""The service's scoring rules on a batch of rows, synchronously, without HTTP, asyncio or Ray.

Nothing here is a second scorer: every rule comes from the service's scoring core (``service/scoring.py``)
and the model repository it loads (``service/repository.py``):

* the models: ``ScoringCore.load`` with the service's settings (``SENTIMENT_*``), so the same folder, the
  same checks (sha256 of each ONNX file against its metadata, the vocabulary checksum, the graph's input and
  output shapes), the same default model and the same onnxruntime thread settings;
* which models: ``ScoringCore.resolve``, so ``--models`` takes what ``?model=`` takes (names, ``all``,
  comma-separated names; an unknown name fails with the service's message);
* which reviews: ``review_problem``, the per-review rules of every way in (text, not blank, at most
  ``SENTIMENT_MAX_REVIEW_CHARS`` characters), per row: a row that breaks one is reported with the reason instead
  of failing the run;
* ``encode_once``: tokenizing once per vocabulary (models that share a tokenizer score the same token batch),
  the onnxruntime session's ``predict`` in batches of at most ``SENTIMENT_BATCH_MAX_SIZE(S)`` rows (what the
  service's batcher runs), ``check_scores`` on what the model returned and ``label_of`` (the same threshold).
  Calibration is in the exported graph, so the scores are the service's.

The core's own entry point, ``ScoringCore.score_with``, is asynchronous and goes through the per-model
batchers; this module calls the synchronous pieces it is made of (``encode_once``, each model's ``predict``,
``check_scores``, ``label_of``), and splits a block into the batches the batcher would run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from service.config import Settings
from service.repository import LoadedModel
from service.scoring import ModelUnavailable, ScoringCore, check_scores, encode_once, label_of, review_problem

# The columns every input block has (bulk/sources.py) and what a batch of scores adds.
ID, TEXT, PROBLEM = "id", "text", "problem"
INPUT_SCHEMA = pa.schema([(ID, pa.string()), (TEXT, pa.string()), (PROBLEM, pa.string())])


def score_column(model: str) -> str:
    return f"score_{model}"


def label_column(model: str) -> str:
    return f"label_{model}"


def output_schema(models: Sequence[str]) -> pa.Schema:
    """The rows written to the output: ``id``, then per model its score and label."""
    fields = [pa.field(ID, pa.string(), nullable=False)]
    for model in models:
        fields += [pa.field(score_column(model), pa.float64(), nullable=False),
                   pa.field(label_column(model), pa.string(), nullable=False)]
    return pa.schema(fields)


def scored_schema(models: Sequence[str]) -> pa.Schema:
    """What ``BatchScorer.score_table`` returns: the output's columns (null for bad rows) and ``problem``."""
    return pa.schema([field.with_nullable(True) for field in output_schema(models)] + [(PROBLEM, pa.string())])


@dataclass
class BatchScorer:
    """The models a run asked for, loaded once (per Ray actor, or once in one process)."""

    core: ScoringCore
    models: list[LoadedModel]
    settings: Settings

    @classmethod
    def load(cls, model_dir: str | Path | None = None, requested: Sequence[str] | None = None) -> BatchScorer:
        """The service's models (``SENTIMENT_MODEL_DIR`` unless ``model_dir``) and the ones ``requested`` names,
        as ``?model=`` names them (None: the default model). Raises ModelLoadError or InvalidInput."""
        return cls.from_settings(Settings() if model_dir is None else Settings(model_dir=Path(model_dir)), requested)

    @classmethod
    def from_settings(cls, settings: Settings, requested: Sequence[str] | None = None) -> BatchScorer:
        core = ScoringCore.load(settings)
        return cls(core, core.resolve(requested), settings)

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.models]

    def warm_up(self) -> None:
        self.core.warm_up()

    def problem_of(self, text: object) -> str | None:
        """Why the service would refuse this review (``review_problem``: the per-review rules of every way in), or
        None."""
        if text is None:
            return "no text"
        problem = review_problem(text, self.core.limits.max_review_chars)
        return None if problem is None else f"text {problem}"

    def score(self, texts: Sequence[str]) -> dict[str, tuple[list[float], list[str | None]]]:
        """Per model, the score and label of each text (checked with ``problem_of``), in order. A score the model
        got wrong (outside [0, 1], NaN: ``check_scores``) comes back as NaN with the label None."""
        encoded = encode_once(self.models, texts)
        results = {}
        for model in self.models:
            batch, size = encoded[id(model.tokenizer)].tokens, self.settings.max_batch_size(model.name)
            parts = [model.predict(batch[start:start + size]) for start in range(0, len(batch), size)]
            scores = np.concatenate(parts).astype(np.float64).tolist() if parts else []
            try:
                check_scores(model.name, scores)
                labels = [label_of(score) for score in scores]
            except ModelUnavailable:  # the service fails the request; here only the rows it concerns
                labels = [label_of(score) if 0 <= score <= 1 else None for score in scores]
                scores = [score if label is not None else float("nan") for score, label in zip(scores, labels,
                                                                                                 strict=True)]
            results[model.name] = (scores, labels)
        return results

    def score_table(self, table: pa.Table) -> pa.Table:
        """A block of input rows (``INPUT_SCHEMA``) scored: ``scored_schema``. Rows with a problem (from the
        reader, or found here) keep their id and reason and get no score."""
        ids = table.column(ID).to_pylist()
        texts = table.column(TEXT).to_pylist()
        problems = table.column(PROBLEM).to_pylist() if PROBLEM in table.column_names else [None] * len(ids)
        problems = [problem or self.problem_of(text) for problem, text in zip(problems, texts, strict=True)]
        good = [position for position, problem in enumerate(problems) if problem is None]
        scored = self.score([texts[position] for position in good])
        columns: dict[str, list] = {ID: ids}
        for name in self.names:
            scores, labels = [None] * len(ids), [None] * len(ids)
            for position, score, label in zip(good, *scored[name], strict=True):
                if label is None:
                    problems[position] = problems[position] or f"model {name} returned an invalid score ({score})"
                else:
                    scores[position], labels[position] = score, label
            columns[score_column(name)], columns[label_column(name)] = scores, labels
        for position in good:  # a row one model could not score is reported, not written half-scored
            if problems[position] is not None:
                for name in self.names:
                    columns[score_column(name)][position] = columns[label_column(name)][position] = None
        columns[PROBLEM] = problems
        return pa.Table.from_pydict(columns, schema=scored_schema(self.names))
