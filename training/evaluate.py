"""Test-set metrics, training-history plots and the Markdown report."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score  # noqa: E402


def test_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
    predicted = (scores >= 0.5).astype(int)
    (tn, fp), (fn, tp) = confusion_matrix(labels, predicted, labels=[0, 1])
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "loss": float(log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "f1": float(f1_score(labels, predicted)),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "reviews": int(len(labels)),
    }


def plot_history(history: dict[str, list[float]], title: str, path: Path) -> None:
    """The course's ``plot(history)``: loss and accuracy per epoch, training and validation."""
    epochs = range(1, len(history["loss"]) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(epochs, history[metric], "o-", label=f"training {metric}")
        axis.plot(epochs, history[f"val_{metric}"], "s-", label=f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(results: list[dict], path: Path) -> None:
    """``results``: one metadata dict per model, as written next to its ONNX file."""
    ranked = sorted(results, key=lambda meta: meta["test_metrics"]["accuracy"], reverse=True)
    lines = [
        "# Model report",
        "",
        "Which model has the better accuracy on the test data? (the course's \"Your turn\", question 1)",
        "",
        "| model | test accuracy | test loss | ROC AUC | F1 | best epoch (val acc) | parameters | ONNX size | training time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for meta in ranked:
        metrics, training = meta["test_metrics"], meta["training"]
        lines.append(
            f"| `{meta['name']}` | {metrics['accuracy']:.4f} | {metrics['loss']:.4f} | {metrics['roc_auc']:.4f} "
            f"| {metrics['f1']:.4f} | {training['best_epoch']} ({training['best_val_accuracy']:.4f}) "
            f"| {meta['parameters']:,} | {meta['onnx_bytes'] / 1e6:.2f} MB | {training['seconds']:.0f} s |"
        )
    if len(ranked) > 1:
        best, runner_up = ranked[0], ranked[1]
        gap = best["test_metrics"]["accuracy"] - runner_up["test_metrics"]["accuracy"]
        lines += [
            "",
            f"**Answer:** `{best['name']}` has the better test accuracy, "
            f"{best['test_metrics']['accuracy']:.4f} against {runner_up['test_metrics']['accuracy']:.4f} "
            f"for `{runner_up['name']}` ({gap * 100:.2f} percentage points, "
            f"on {best['test_metrics']['reviews']:,} test reviews).",
        ]
    lines += ["", "## Confusion matrices (test set, threshold 0.5)", ""]
    lines += ["| model | true neg | false pos | false neg | true pos |", "|---|---|---|---|---|"]
    for meta in ranked:
        cm = meta["test_metrics"]["confusion_matrix"]
        lines.append(f"| `{meta['name']}` | {cm['tn']} | {cm['fp']} | {cm['fn']} | {cm['tp']} |")
    lines += [
        "",
        "## Seed selection",
        "",
        "Each model was trained once per seed (the seed sets the weight initialisation, the shuffle and so the "
        "validation split). The run with the best validation accuracy was kept; only the kept run was "
        "evaluated on the test set.",
        "",
        "| model | seed | best epoch | validation accuracy | training time | kept |",
        "|---|---|---|---|---|---|",
    ]
    for meta in ranked:
        for run in meta["training"].get("seed_candidates", []):
            kept = "yes" if run["seed"] == meta["training"]["seed"] else ""
            lines.append(f"| `{meta['name']}` | {run['seed']} | {run['best_epoch']} | {run['best_val_accuracy']:.4f} "
                         f"| {run['seconds']:.0f} s | {kept} |")
    lines += ["", "## Training curves (kept run)", ""]
    for meta in ranked:
        lines += [f"### `{meta['name']}`", "", f"![{meta['name']} history]({meta['name']}_history.png)", ""]
    lines += [
        "## Configuration",
        "",
        "Binary cross-entropy, validation split 0.2, the weights of the epoch with the best validation accuracy "
        "kept. Every final `Dense(1)` has a sigmoid (the course listing omits it).",
        "",
        "| model | optimizer | learning rate | epochs run / max | batch | max length | vocabulary | seeds tried |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for meta in ranked:
        training = meta["training"]
        epochs_run = training.get("epochs_run", training["epochs"])
        lines.append(f"| `{meta['name']}` | {training['optimizer']} | {training['learning_rate']:g} "
                     f"| {epochs_run} / {training['epochs']} | {training['batch_size']} | {meta['max_len']} "
                     f"| {meta['num_words']:,} | {len(training.get('seed_candidates', [])) or 1} |")
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
