"""salad-eval compare: paired accuracy difference, discordant counts, McNemar, choice KL, robustness buckets,
all on tiny hand-made prediction folders with hand-computed answers."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.compare import (choice_kl, choice_kl_by_benchmark, compare_draws, compare_runs, compare_sides, comparison_markdown,
                                gap_by_cascade_bucket, load_predictions, mcnemar_exact_p, paired_accuracy,
                                paired_bootstrap_diff, wer_bucket)

REPO = Path(__file__).resolve().parents[1]
LN = math.log
EVEN = [LN(0.5), LN(0.5)]  # base text: 50/50 between two choices


def scores(correct, logprobs, **extra):
    return {"correct": correct, "logprobs": logprobs, "prediction": int(np.argmax(logprobs)), **extra}


def write_run(folder: Path, speech_correct, speech_logprobs=None, task="t", cascade=None):
    folder.mkdir(parents=True)
    (folder / "predictions").mkdir()
    rows = []
    for i, correct in enumerate(speech_correct):
        row = {"id": f"q{i}", "answer": 0, "base_text": scores(True, EVEN),
               "speech": scores(correct, (speech_logprobs or {}).get(i, EVEN))}
        if cascade is not None:
            row["cascade"] = scores(cascade[i], EVEN, transcript="x")
        rows.append(row)
    (folder / "predictions" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_choice_kl_by_hand():
    # KL([.5,.5] || [.9,.1]) = .5 ln(.5/.9) + .5 ln(.5/.1) = .5 ln(25/9)
    assert choice_kl(EVEN, [LN(0.9), LN(0.1)]) == pytest.approx(0.5 * LN(25 / 9))
    assert choice_kl([LN(0.2), LN(0.8)], [LN(0.2) + 3, LN(0.8) + 3]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="same choices"):
        choice_kl(EVEN, [0.0, 0.0, 0.0])


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(1, 1) == 1.0
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 / 32)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact_p(1, 3) == pytest.approx(2 * 5 / 16)  # 2 * (C(4,0) + C(4,1)) / 2^4


def test_paired_bootstrap_two_items_by_hand():
    # differences [0, 1]: resampled means are 0, .5, 1 with probabilities 1/4, 1/2, 1/4 -> 95 % interval [0, 1]
    point, low, high = paired_bootstrap_diff([0, 0], [0, 1], num_resamples=4000, seed=3)
    assert (point, low, high) == (0.5, 0.0, 1.0)
    # a constant difference has a zero-width interval; the same seed gives the same interval
    assert paired_bootstrap_diff([0, 1, 0], [1, 2, 1], 500, seed=1) == (1.0, 1.0, 1.0)
    assert paired_bootstrap_diff([0, 1, 0, 1], [1, 1, 0, 0], 300, seed=7) == \
        paired_bootstrap_diff([0, 1, 0, 1], [1, 1, 0, 0], 300, seed=7)
    with pytest.raises(ValueError, match="same non-empty items"):
        paired_bootstrap_diff([0, 1], [0], 10)


def test_paired_accuracy_discordant_counts():
    row = paired_accuracy([True, False, False, True, True], [True, True, True, False, True], 2000, seed=0)
    assert (row["n"], row["acc_a"], row["acc_b"]) == (5, 60.0, 80.0)
    assert row["acc_diff"] == pytest.approx(20.0)
    assert (row["gained"], row["lost"]) == (2, 1)
    assert row["mcnemar_p"] == pytest.approx(1.0)  # 2 * (1 + 3) / 8 capped at 1
    assert row["acc_diff_ci"][0] <= 20.0 <= row["acc_diff_ci"][1]


def test_compare_runs_on_the_same_items(tmp_path):
    a = write_run(tmp_path / "a", [False, False, True, True], {0: [LN(0.9), LN(0.1)]})
    b = write_run(tmp_path / "b", [True, True, True, False])
    result = compare_runs([a, b], num_resamples=1000, seed=0)
    assert result["n"] == 4 and result["mode"] == "speech"
    (c,) = result["comparisons"]
    assert (c["a"], c["b"], c["gained"], c["lost"]) == ("a", "b", 2, 1)
    assert c["acc_diff"] == pytest.approx(25.0)
    # A's KL: one item at .5 ln(25/9), three at 0 -> mean / 4; B's KL is 0 everywhere
    assert c["kl_a"] == pytest.approx(0.5 * LN(25 / 9) / 4)
    assert c["kl_b"] == 0.0 and c["kl_diff"] == pytest.approx(-c["kl_a"])
    assert c["kl_diff_ci"][0] <= c["kl_diff"] <= c["kl_diff_ci"][1] <= 0.0
    table = comparison_markdown(result)
    assert "| a → b | 50.0 | 75.0 | +25.0 [" in table and "| 2 / 1 |" in table


def test_compare_draws_averages_each_item_over_draws_before_the_paired_bootstrap(tmp_path):
    # draw 0: B gains q0; draw 1: B loses q1 and is off on q2's choices -> per-item means differ by +.5, -.5, 0, 0
    a0 = write_run(tmp_path / "a0", [False, True, True, True])
    b0 = write_run(tmp_path / "b0", [True, True, True, True])
    a1 = write_run(tmp_path / "a1", [False, True, True, True])
    b1 = write_run(tmp_path / "b1", [False, False, True, True], {2: [LN(0.9), LN(0.1)]})
    result = compare_draws([(a0, b0), (a1, b1)], num_resamples=2000, seed=0)
    assert (result["draws"], result["n"], result["mode"]) == (2, 4, "speech")
    assert (result["acc_a"], result["acc_b"], result["acc_diff"]) == (75.0, 75.0, 0.0)
    assert result["acc_diff_ci"][0] < 0.0 < result["acc_diff_ci"][1]
    assert result["kl_a"] == 0.0 and result["kl_diff"] == pytest.approx(0.5 * LN(25 / 9) / 2 / 4)
    assert [(d["gained"], d["lost"]) for d in result["per_draw"]] == [(1, 0), (0, 1)]
    assert result["per_draw"][0] == compare_runs([a0, b0], [str(a0), str(b0)], num_resamples=2000)["comparisons"][0]
    short = write_run(tmp_path / "short", [True, True, True])
    with pytest.raises(ValueError, match="draw 1 .* scored other items than draw 0"):
        compare_draws([(a0, b0), (short, short)])
    with pytest.raises(ValueError, match="at least one"):
        compare_draws([])


def test_compare_names_item_mismatch(tmp_path):
    a = write_run(tmp_path / "a", [True, False, True])
    b = write_run(tmp_path / "b", [True, False])
    with pytest.raises(ValueError, match=r"'b' lacks 1 \(t/q2\) and adds 0"):
        compare_runs([a, b])
    with pytest.raises(ValueError, match="no predictions"):
        load_predictions(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="at least two runs"):
        compare_runs([a])
    with pytest.raises(ValueError, match="no 'cascade' scores"):
        compare_runs([a, a], labels=["x", "y"], mode="cascade")


def test_compare_sides_pairs_two_modes_and_matches_compare_runs_on_one(tmp_path):
    # speech of b right on q0, q1, q2; the cascade of a right on q0, q3 -> b gains q1, q2 and loses q3
    a = write_run(tmp_path / "a", [False] * 4, cascade=[True, False, False, True])
    b = write_run(tmp_path / "b", [True, True, True, False], {0: [LN(0.9), LN(0.1)]})
    row = compare_sides((a, "cascade"), (b, "speech"), ["cascade", "model"], num_resamples=500, seed=1)
    assert (row["a"], row["b"], row["mode_a"], row["mode_b"]) == ("cascade", "model", "cascade", "speech")
    assert (row["acc_a"], row["acc_b"], row["gained"], row["lost"]) == (50.0, 75.0, 2, 1)
    assert row["kl_a"] == 0.0 and row["kl_b"] == pytest.approx(0.5 * LN(25 / 9) / 4)
    same = compare_sides((a, "speech"), (b, "speech"), ["a", "b"], num_resamples=500, seed=1)
    (reference,) = compare_runs([a, b], num_resamples=500, seed=1)["comparisons"]
    assert {k: same[k] for k in reference} == reference
    assert compare_sides((a, "cascade"), (a, "speech"), num_resamples=10)["a"] == "a:cascade"
    with pytest.raises(ValueError, match="no 'cascade' scores"):
        compare_sides((b, "cascade"), (a, "speech"))


def test_choice_kl_by_benchmark(tmp_path):
    run = write_run(tmp_path / "r", [True, True], {1: [LN(0.9), LN(0.1)]}, task="t1")
    write_run(tmp_path / "other", [True], task="t2")
    (tmp_path / "other" / "predictions" / "t2.jsonl").rename(run / "predictions" / "t2.jsonl")
    assert choice_kl_by_benchmark(run) == pytest.approx({"t1": 0.5 * LN(25 / 9) / 2, "t2": 0.0})


def test_compare_reads_subtask_benchmarks(tmp_path):
    # a benchmark named "arithmetic/1_digit_multiplication" is written as predictions/arithmetic/...jsonl
    runs = []
    for name, correct in (("a", [True, False]), ("b", [True, True])):
        run = write_run(tmp_path / name, [True])
        nested = run / "predictions" / "arithmetic" / "1_digit_multiplication.jsonl"
        nested.parent.mkdir()
        nested.write_text("".join(json.dumps({"id": f"m{i}", "answer": 0, "base_text": scores(True, EVEN),
                                              "speech": scores(c, EVEN)}) + "\n" for i, c in enumerate(correct)))
        runs.append(run)
    assert sorted(load_predictions(runs[0])) == [("arithmetic/1_digit_multiplication", "m0"),
                                                 ("arithmetic/1_digit_multiplication", "m1"), ("t", "q0")]
    result = compare_runs(runs)
    assert result["n"] == 3 and (result["comparisons"][0]["gained"], result["comparisons"][0]["lost"]) == (1, 0)


def test_gap_by_cascade_bucket_by_hand(tmp_path):
    # base text right everywhere; cascade right on q0..q2, wrong on q3..q4; speech right on q0, q1, q3
    run = write_run(tmp_path / "r", [True, True, False, True, False], cascade=[True, True, True, False, False])
    buckets = gap_by_cascade_bucket(run, num_resamples=500)
    right, wrong = buckets["cascade right"], buckets["cascade wrong"]
    assert (right["n"], wrong["n"]) == (3, 2)
    assert right["gap"] == pytest.approx(100 - 200 / 3) and wrong["gap"] == pytest.approx(50.0)
    assert right["gap_ci"][0] <= right["gap"] <= right["gap_ci"][1]
    with pytest.raises(ValueError, match="no cascade scores"):
        gap_by_cascade_bucket(write_run(tmp_path / "nocascade", [True]))


def test_wer_buckets():
    wers = {"a": 0.0, "b": 0.1, "c": 0.5}
    bucket = wer_bucket([0, 0.25], lambda r: wers[r["id"]])
    assert [bucket({"id": k}) for k in "abc"] == ["WER <= 0", "WER (0, 0.25]", "WER > 0.25"]


def test_cli_compare_subprocess(tmp_path):
    a = write_run(tmp_path / "a", [False, True])
    b = write_run(tmp_path / "b", [True, True])
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    installed = Path(sys.executable).parent / "salad-eval"
    command = [str(installed)] if installed.exists() else \
        [sys.executable, "-c", "import sys; from evaluation.cli import main; sys.exit(main())"]
    out = tmp_path / "cmp"
    proc = subprocess.run([*command, "compare", str(a), str(b), "--bootstrap", "200", "--output", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "| a → b | 50.0 | 100.0 |" in proc.stdout
    assert json.loads((out / "compare.json").read_text())["comparisons"][0]["gained"] == 1
    bad = subprocess.run([*command, "compare", str(a), str(tmp_path / "missing")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert bad.returncode != 0 and "no predictions" in bad.stderr
    draws = subprocess.run([*command, "compare", "--draws", str(a), str(b), str(a), str(a), "--bootstrap", "200"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert draws.returncode == 0, draws.stderr
    assert "| 0: a → b | 50.0 | 100.0 | +50.0" in draws.stdout and "| **mean over draws** | 50.0 | 75.0 | +25.0" \
        in draws.stdout
    odd = subprocess.run([*command, "compare", "--draws", str(a), str(b), str(a)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert odd.returncode != 0 and "takes pairs" in odd.stderr
