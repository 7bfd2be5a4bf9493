"""Plots of evaluation results (matplotlib, Agg): accuracy per task by mode, and the gap across checkpoints."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spans import atomic_writer  # noqa: E402

MODE_LABELS = {
    "base_text_acc": "base LLM, text",
    "text_acc": "SALAD, text",
    "speech_acc": "SALAD, speech",
    "cascade_acc": "ASR cascade",
    "generate_acc": "SALAD, generate",
}


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_writer(path) as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _load(results) -> dict:
    if isinstance(results, (str, os.PathLike)):
        with open(results, encoding="utf-8") as handle:
            return json.load(handle)
    return results


def plot_accuracy_by_task(results, path) -> Path:
    """Grouped bars: every accuracy present (base text, SALAD text, speech, cascade, generate) per task + average,
    with bootstrap intervals as error bars and the chance level as a dotted line per task."""
    results = _load(results)
    rows = dict(results["benchmarks"])
    if len(rows) > 1 and results.get("average"):
        rows["average"] = results["average"]
    keys = [key for key in MODE_LABELS if any(key in row for row in rows.values())]
    if not keys:
        raise ValueError("No accuracies to plot in these results.")
    names = list(rows)
    x = np.arange(len(names))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(names) * len(keys) / 2), 3.8))
    for k, key in enumerate(keys):
        values = [rows[n].get(key, np.nan) for n in names]
        errors = np.array([
            [v - rows[n][f"{key}_ci"][0], rows[n][f"{key}_ci"][1] - v] if f"{key}_ci" in rows[n] else [0, 0]
            for n, v in zip(names, values)
        ]).T
        ax.bar(x + (k - (len(keys) - 1) / 2) * width, values, width, yerr=errors, capsize=2, label=MODE_LABELS[key])
    for i, name in enumerate(names):
        if "chance_acc" in rows[name]:
            ax.hlines(rows[name]["chance_acc"], i - 0.45, i + 0.45, colors="k", linestyles=":", linewidth=1)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Accuracy by task ({results.get('model', 'model')}); dotted: chance")
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_gap_over_checkpoints(results_list: Sequence, path, labels: Sequence[str] | None = None) -> Path:
    """Average gap (base text − speech) and speech accuracy for a sequence of results (e.g. checkpoints or stages),
    in the given order; per-task gaps as thin lines."""
    loaded = [_load(r) for r in results_list]
    if not loaded:
        raise ValueError("plot_gap_over_checkpoints needs at least one results file.")
    if labels is None:
        labels = [str(r.get("label") or r.get("model") or i) for i, r in enumerate(loaded)]
    if len(labels) != len(loaded):
        raise ValueError(f"{len(labels)} labels for {len(loaded)} results.")
    for i, result in enumerate(loaded):
        if "gap" not in result.get("average", {}):
            raise ValueError(f"Results {labels[i]!r} have no gap (run with modes text,speech and a base model).")
    x = np.arange(len(loaded))
    fig, (ax_gap, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6))
    tasks = sorted({name for r in loaded for name in r["benchmarks"]})
    for task in tasks:
        gaps = [r["benchmarks"].get(task, {}).get("gap", np.nan) for r in loaded]
        ax_gap.plot(x, gaps, linewidth=0.8, alpha=0.6, marker=".", label=task)
    ax_gap.plot(x, [r["average"]["gap"] for r in loaded], color="k", linewidth=2, marker="o", label="average")
    ax_gap.axhline(0, color="grey", linewidth=0.5)
    ax_gap.set_ylabel("gap: base text − speech (points)")
    ax_gap.set_title("Text–speech gap")
    for key in ("base_text_acc", "speech_acc", "cascade_acc", "text_acc"):
        if all(key in r["average"] for r in loaded):
            ax_acc.plot(x, [r["average"][key] for r in loaded], marker="o", label=MODE_LABELS[key])
    ax_acc.set_ylabel("average accuracy (%)")
    ax_acc.set_title("Average accuracy")
    for ax in (ax_gap, ax_acc):
        ax.set_xticks(x, labels, rotation=20, ha="right")
        ax.legend(fontsize=7)
    return _save(fig, path)
