"""Accuracy, bootstrap intervals, gap and averages."""

import math

import numpy as np
import pytest

from evaluation.metrics import (
    accuracy,
    average_rows,
    bootstrap_ci,
    chance_accuracy,
    paired_bootstrap_gap_ci,
    summarize_task,
)


def test_accuracy_and_chance():
    assert accuracy([True, False, True, True]) == 75.0
    assert math.isnan(accuracy([]))
    assert chance_accuracy([2, 4]) == pytest.approx(37.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_interval_contains_point_estimate_and_is_seeded(seed):
    correct = np.random.default_rng(seed).random(57) < 0.4
    low, high = bootstrap_ci(correct, num_resamples=500, seed=seed)
    assert low <= accuracy(correct) <= high
    assert 0.0 <= low < high <= 100.0
    assert (low, high) == bootstrap_ci(correct, num_resamples=500, seed=seed)
    assert bootstrap_ci([True] * 10) == (100.0, 100.0)


def test_paired_gap_interval_and_validation():
    rng = np.random.default_rng(0)
    text, speech = rng.random(80) < 0.7, rng.random(80) < 0.5
    low, high = paired_bootstrap_gap_ci(text, speech, num_resamples=300)
    assert low <= accuracy(text) - accuracy(speech) <= high
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap_gap_ci(text, speech[:10])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(text, confidence=1.5)


def test_summary_rows_and_average_gap_identities():
    rows = {
        "a": summarize_task({"base_text_acc": [1, 1, 0, 1], "speech_acc": [1, 0, 0, 1]}, [4, 4, 4, 4], 200),
        "b": summarize_task({"base_text_acc": [1, 0, 1], "speech_acc": [0, 0, 1]}, [2, 2, 2], 200),
    }
    for row in rows.values():
        assert row["gap"] == row["base_text_acc"] - row["speech_acc"]
        assert row["gap_ci"][0] <= row["gap"] <= row["gap_ci"][1]
    average = average_rows(rows)
    assert average["gap"] == average["base_text_acc"] - average["speech_acc"]
    assert average["gap"] == pytest.approx(np.mean([r["gap"] for r in rows.values()]))
    assert average["n"] == 7
    with pytest.raises(ValueError, match="Unknown accuracy key"):
        summarize_task({"bogus": [1]}, [2])
    with pytest.raises(ValueError, match="results for"):
        summarize_task({"speech_acc": [1, 0]}, [2])


def test_speech_text_agreement_by_hand():
    from evaluation.metrics import choice_distribution, speech_text_agreement

    text = [{"prediction": 0, "logprobs": [math.log(0.75), math.log(0.25)]},
            {"prediction": 1, "logprobs": [math.log(0.5), math.log(0.5) + 1e-9]}]
    same = [{"prediction": 0, "logprobs": [math.log(0.75), math.log(0.25)]},
            {"prediction": 1, "logprobs": [math.log(0.5), math.log(0.5) + 1e-9]}]
    flipped = [{"prediction": 1, "logprobs": [math.log(0.25), math.log(0.75)]},
               {"prediction": 1, "logprobs": [-50.0, 0.0]}]
    assert choice_distribution([math.log(3.0), 0.0]) == pytest.approx([0.75, 0.25])
    exact = speech_text_agreement(text, same, num_resamples=50)
    assert exact["agreement"] == 100.0 and exact["choice_tv"] == pytest.approx(0.0, abs=1e-9)
    moved = speech_text_agreement(text, flipped, num_resamples=50)
    # item 1: |0.75-0.25| = 0.5 TV; item 2: from (0.5, 0.5) to (0, 1): 0.5 TV; predictions agree on item 2 only
    assert moved["agreement"] == 50.0 and moved["choice_tv"] == pytest.approx(0.5, abs=1e-6)
    assert moved["agreement_ci"][0] <= 50.0 <= moved["agreement_ci"][1]
    with pytest.raises(ValueError, match="same items"):
        speech_text_agreement(text, flipped[:1])
