"""Accuracy, seeded bootstrap confidence intervals and the text-speech gap (all in percent)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# result key -> per-item correctness key produced by evaluation.api
ACCURACY_KEYS = ("base_text_acc", "text_acc", "speech_acc", "cascade_acc", "generate_acc")


def accuracy(correct: Sequence[bool]) -> float:
    """Percent of True values; NaN when empty."""
    values = np.asarray(correct, dtype=float)
    return float(100.0 * values.mean()) if values.size else math.nan


def _check_bootstrap(num_resamples: int, confidence: float) -> None:
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")


def _percentile_interval(samples: np.ndarray, point: float, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    # Percentile intervals of a discrete statistic can exclude the estimate by a hair; widen to contain it.
    return float(min(low, point)), float(max(high, point))


def bootstrap_ci(
    correct: Sequence[bool], num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy (percent) over items; (NaN, NaN) when empty."""
    _check_bootstrap(num_resamples, confidence)
    values = np.asarray(correct, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, values.size, size=(num_resamples, values.size))
    samples = 100.0 * values[index].mean(axis=1)
    return _percentile_interval(samples, accuracy(correct), confidence)


def gap(base_text_correct: Sequence[bool], speech_correct: Sequence[bool]) -> float:
    """Text accuracy of the base LLM minus speech accuracy of the adapted model, in points."""
    return accuracy(base_text_correct) - accuracy(speech_correct)


def paired_bootstrap_gap_ci(
    base_text_correct: Sequence[bool],
    speech_correct: Sequence[bool],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of the gap, resampling items jointly for both modes (the same questions)."""
    _check_bootstrap(num_resamples, confidence)
    text = np.asarray(base_text_correct, dtype=float)
    speech = np.asarray(speech_correct, dtype=float)
    if text.shape != speech.shape:
        raise ValueError(f"The gap needs the same items in both modes, got {text.size} and {speech.size}.")
    if text.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, text.size, size=(num_resamples, text.size))
    samples = 100.0 * (text[index].mean(axis=1) - speech[index].mean(axis=1))
    return _percentile_interval(samples, gap(base_text_correct, speech_correct), confidence)


def choice_distribution(logprobs: Sequence[float]) -> np.ndarray:
    """Softmax over a question's per-choice total log-likelihoods: the model's belief over its choices."""
    values = np.asarray(logprobs, dtype=float)
    weights = np.exp(values - values.max())
    return weights / weights.sum()


def speech_text_agreement(text_records: Sequence[Mapping], speech_records: Sequence[Mapping],
                          num_resamples: int = 1000, seed: int = 0) -> dict:
    """How closely the speech answers follow the base LLM's text answers on the same questions.

    The gap compares two accuracies, so a question both modes get wrong in different ways counts as closed; with
    the few hundred items a CPU can score, its interval is ±10 points. These two per-item measures see more:
    `agreement` = % of items whose speech prediction equals the text prediction (bootstrap interval), and
    `choice_tv` = mean total-variation distance between the two choice distributions (`choice_distribution`;
    0 = speech behaves exactly as text, 1 = disjoint).
    Records are `ChoiceScores.to_dict()` rows (`prediction`, `logprobs`) of the same items in the same order.
    """
    if len(text_records) != len(speech_records):
        raise ValueError(f"Agreement needs the same items in both modes, got {len(text_records)} and "
                         f"{len(speech_records)}.")
    same = [t["prediction"] == s["prediction"] for t, s in zip(text_records, speech_records)]
    tv = [0.5 * float(np.abs(choice_distribution(t["logprobs"]) - choice_distribution(s["logprobs"])).sum())
          for t, s in zip(text_records, speech_records)]
    return {"agreement": accuracy(same), "agreement_ci": list(bootstrap_ci(same, num_resamples, seed=seed)),
            "choice_tv": float(np.mean(tv)) if tv else math.nan}


def chance_accuracy(num_choices: Sequence[int]) -> float:
    """Expected accuracy (percent) of a uniform random guess."""
    counts = np.asarray(num_choices, dtype=float)
    return float(100.0 * (1.0 / counts).mean()) if counts.size else math.nan


def summarize_task(
    correct_by_mode: Mapping[str, Sequence[bool]],
    num_choices: Sequence[int],
    num_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """One benchmark's row: n, chance, every accuracy present in `correct_by_mode` (keys of ACCURACY_KEYS),
    `<key>_ci` intervals, and `gap` / `gap_ci` when base text and speech are both present."""
    for key in correct_by_mode:
        if key not in ACCURACY_KEYS:
            raise ValueError(f"Unknown accuracy key {key!r}; expected one of {ACCURACY_KEYS}.")
    row: dict = {"n": len(num_choices), "chance_acc": chance_accuracy(num_choices)}
    for key in ACCURACY_KEYS:
        if key in correct_by_mode:
            values = correct_by_mode[key]
            if len(values) != len(num_choices):
                raise ValueError(f"{key}: {len(values)} results for {len(num_choices)} items.")
            row[key] = accuracy(values)
            row[f"{key}_ci"] = list(bootstrap_ci(values, num_resamples, seed=seed))
    if "base_text_acc" in correct_by_mode and "speech_acc" in correct_by_mode:
        row["gap"] = row["base_text_acc"] - row["speech_acc"]
        row["gap_ci"] = list(
            paired_bootstrap_gap_ci(correct_by_mode["base_text_acc"], correct_by_mode["speech_acc"], num_resamples, seed=seed)
        )
    if "base_text_acc" in correct_by_mode and "cascade_acc" in correct_by_mode:
        row["cascade_gap"] = row["base_text_acc"] - row["cascade_acc"]
    return row


def average_rows(rows: Mapping[str, Mapping]) -> dict:
    """Unweighted mean over benchmarks (as the paper's Avg column) of every accuracy present in all rows;
    gap = mean base text − mean speech, so it equals the mean of the per-task gaps exactly."""
    if not rows:
        return {}
    average: dict = {"n": int(sum(row["n"] for row in rows.values())), "num_benchmarks": len(rows)}
    keys = [key for key in (*ACCURACY_KEYS, "chance_acc", "agreement", "choice_tv")
            if all(key in row for row in rows.values())]
    for key in keys:
        average[key] = float(np.mean([row[key] for row in rows.values()]))
    if "base_text_acc" in average and "speech_acc" in average:
        average["gap"] = average["base_text_acc"] - average["speech_acc"]
    if "base_text_acc" in average and "cascade_acc" in average:
        average["cascade_gap"] = average["base_text_acc"] - average["cascade_acc"]
    return average
