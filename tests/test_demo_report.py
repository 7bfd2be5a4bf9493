"""The demo report renders from a results dict alone: tables with every stage and voice, plots written; the paired
comparisons and goal verdicts come from tiny hand-made prediction folders."""

import json
import math
from types import SimpleNamespace

import pytest

from salad_demo.pipeline import STAGES
from salad_demo.report import (CASCADE, REFERENCE, collect_results, final_model, gap_closed, goal_checks,
                               mean_choice_kl, paired_comparisons, plot_training, summary_rows, training_curves,
                               write_report)
from salad_demo.stages import StageRunner


def _eval(base, speech, cascade, voice):
    return {"voice": voice, "benchmarks": {"general_knowledge": {"n": 40, "base_text_acc": base}},
            "average": {"n": 40, "base_text_acc": base, "text_acc": base, "speech_acc": speech,
                        "cascade_acc": cascade, "gap": base - speech, "chance_acc": 20.0}}


def _fixture(tmp_path):
    evaluations = {stage: {"seen": _eval(50.0, speech, 45.0, "flite:slt"),
                           "unseen": _eval(50.0, speech - 5, 40.0, "piper")}
                   for stage, speech in (("salad-init", 20.0), ("stage I", 30.0), ("stage II active", 40.0),
                                         ("stage II uniform", 35.0))}
    curves = {"kd_loss": [(1, 2.0), (2, 1.5), (3, 1.2)], "misalignment": [(2, 0.8)], "forgetting": [(2, 0.01)]}
    clusters = [{"cluster": c, "size": 10, "misalignment": 0.5 + c, "cer": 0.1, "dropped": c == 2,
                 "target_prob": 0.3, "selected": 3 * c, "top_domains": [["bigbench/x", 5]]} for c in range(3)]
    return {
        "preset": {"name": "fixture", "seen_voice": "flite:slt", "unseen_voice": "piper"},
        "recipe": {"adapter_type": "transcript", "stack_factor": 10, "note": "why this recipe"},
        "first_look": {"audio": "/x/clip.wav", "audio_seconds": 3.1, "reference": "hello there", "prompt": "say?",
                       "answer": "hm", "tokens_per_second": 12.5, "peak_rss_gib": 1.2, "note": "UNTRAINED adapter"},
        "eval_sets": {"screen": {"general_knowledge": {"base_text_acc": 50.0, "chance_acc": 20.0, "kept": True},
                                 "known_unknowns": {"base_text_acc": 21.0, "chance_acc": 20.0, "kept": False}}},
        "data": {"stage1": {"documents": 4, "replay_documents": 4, "sources": ["bigbench/understanding_fables"]},
                 "pool_excluded_tasks": ["general_knowledge", "understanding_fables"]},
        "evaluations": evaluations,
        "summary": summary_rows(evaluations),
        "training": {"stage I": {"output_dir": str(tmp_path / "s1"), "steps": 3, "curves": curves}},
        "selection": {"active": {"gamma": 5.0, "selected_texts": 9, "pool_size": 30, "clusters": clusters,
                                 "output_dir": str(tmp_path / "nope")},
                      "uniform": {"gamma": 0.0, "selected_texts": 9, "pool_size": 30, "clusters": clusters}},
        "export": {"model": "OUT/salad-demo", "dataset": "OUT/salad-synth-demo", "best_stage2": "active",
                   "publish": ["salad-publish OUT/salad-demo ORG/salad-demo --repo-type model"]},
        "stages": [{"stage": "assets", "seconds": 1.5, "peak_rss_gib": 0.5},
                   {"stage": "stage1", "seconds": 60.0, "peak_rss_gib": 2.0}],
    }


def test_gap_closed_is_relative_to_the_initial_gap():
    assert gap_closed(30.0, 15.0) == 50.0
    assert gap_closed(30.0, 36.0) == -20.0
    assert gap_closed(0.0, 5.0) is None and gap_closed(None, 5.0) is None


def test_summary_has_one_row_per_stage_and_voice_with_gap_closed(tmp_path):
    rows = _fixture(tmp_path)["summary"]
    assert [(r["stage"], r["voice"]) for r in rows][:3] == [("salad-init", "seen"), ("salad-init", "unseen"),
                                                           ("stage I", "seen")]
    by = {(r["stage"], r["voice"]): r for r in rows}
    assert by[("salad-init", "seen")]["gap_closed_pct"] == 0.0
    assert by[("stage II active", "seen")]["gap_closed_pct"] == 100 * (30 - 10) / 30
    assert by[("stage I", "unseen")]["gap"] == 50.0 - 25.0


def test_training_curves_read_kd_loss_m_and_f_from_log_history():
    history = [{"step": 1, "kd_loss": 2.0, "loss": 2.0}, {"step": 2, "misalignment": 0.4, "forgetting": 0.0},
               {"step": 2, "train_runtime": 3.0}]
    curves = training_curves(history)
    assert curves == {"kd_loss": [(1, 2.0)], "misalignment": [(2, 0.4)], "forgetting": [(2, 0.0)]}


def test_training_curves_and_plot_carry_the_adapters_learned_scalars(tmp_path):
    history = [{"step": 2, "kd_loss": 1.0, "adapter/numeral_bias": 0.1}, {"step": 4, "adapter/numeral_bias": 0.3}]
    curves = training_curves(history, step_offset=10)
    assert curves["adapter/numeral_bias"] == [(12, 0.1), (14, 0.3)] and curves["kd_loss"] == [(12, 1.0)]
    path = plot_training({"stage I": {"curves": curves}}, tmp_path / "training.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_write_report_renders_tables_and_plots(tmp_path):
    results = _fixture(tmp_path)
    paths = write_report(results, tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    for needle in ("| stage II active | unseen (piper) |", "gap closed", "UNTRAINED adapter", "known_unknowns",
                   "dropped (not clearly above chance)", "adapter_type='transcript'", "why this recipe",
                   "| **total** | 61.5 |", "![training](plots/training.png)", "salad-publish OUT/salad-demo"):
        assert needle in text, needle
    for name in ("stages", "training", "misalignment"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"][0]["stage"] == "salad-init"
    assert set(paths) >= {"results", "report", "plot_stages", "plot_training", "plot_misalignment"}


def test_report_without_training_or_selection_still_renders(tmp_path):
    results = _fixture(tmp_path)
    results.update(training={}, selection={}, export=None, first_look=None)
    write_report(results, tmp_path)
    assert "## Results" in (tmp_path / "REPORT.md").read_text()
    assert not (tmp_path / "plots" / "training.png").exists()


# ---------------------------------------------------------------------------------------------- paired fixture
BASE_P0 = 0.8  # the base LLM puts 0.8 on the right answer (choice 0) of every item
# P(choice 0) of each item's speech answer per (model, voice): right where > 0.5. Ten items on two tasks.
SPEECH_P0 = {
    ("salad-init", "seen"): [0.6] * 3 + [0.3] * 7, ("salad-init", "unseen"): [0.6] * 3 + [0.3] * 7,
    ("stage I", "seen"): [0.8] * 9 + [0.3], ("stage I", "unseen"): [0.6] * 4 + [0.4] * 6,
    ("stage II active", "seen"): [0.8] * 10, ("stage II active", "unseen"): [0.6] * 4 + [0.4] * 6,
    ("stage II uniform", "seen"): [0.8] * 9 + [0.3], ("stage II uniform", "unseen"): [0.6] * 6 + [0.4] * 4,
}
CASCADE_RIGHT = [True] * 8 + [False] * 2  # both voices
FOLDER = {"salad-init": "salad-init", "stage I": "stage1", "stage II active": "stage2-active",
          "stage II uniform": "stage2-uniform"}


def _scores(p0):
    return {"correct": p0 > 0.5, "prediction": 0 if p0 > 0.5 else 1, "logprobs": [math.log(p0), math.log(1 - p0)]}


def _kl(p, q):
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _write_predictions(folder, speech_p0):
    for task, items in (("t1", range(0, 5)), ("t2", range(5, 10))):
        rows = [{"id": f"q{i}", "answer": 0, "base_text": _scores(BASE_P0), "text": _scores(BASE_P0),
                 "speech": _scores(speech_p0[i]), "cascade": _scores(0.7 if CASCADE_RIGHT[i] else 0.2)}
                for i in items]
        path = folder / "predictions" / f"{task}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _prediction_folders(out):
    return {model: {voice: _write_predictions(out / "eval" / FOLDER[model] / voice, SPEECH_P0[(model, voice)])
                    for voice in ("seen", "unseen")} for model in FOLDER}


def _paired_results(tmp_path):
    results = _fixture(tmp_path)
    results["paired"] = paired_comparisons(_prediction_folders(tmp_path), num_resamples=2000)
    return results


def test_paired_comparisons_pair_every_stage_and_the_cascade(tmp_path):
    paired = paired_comparisons(_prediction_folders(tmp_path), num_resamples=2000)
    pairs = [(r["a"], r["b"]) for r in paired["seen"]]
    assert pairs == [("salad-init", "stage I"), ("stage I", "stage II active"), ("stage I", "stage II uniform"),
                     ("salad-init", "stage II active"), ("salad-init", "stage II uniform"),
                     ("stage II uniform", "stage II active"), (CASCADE, "salad-init"), (CASCADE, "stage I"),
                     (CASCADE, "stage II active"), (CASCADE, "stage II uniform")]
    first = paired["seen"][0]
    assert (first["n"], first["acc_a"], first["acc_b"], first["gained"], first["lost"]) == (10, 30.0, 90.0, 6, 0)
    assert first["acc_diff_ci"][0] > 0 and first["mode_a"] == first["mode_b"] == "speech"
    assert first["kl_a"] == pytest.approx((3 * _kl(0.8, 0.6) + 7 * _kl(0.8, 0.3)) / 10)
    assert first["kl_b"] == pytest.approx(_kl(0.8, 0.3) / 10)
    cascade = paired["unseen"][8]
    assert (cascade["mode_a"], cascade["acc_a"], cascade["acc_b"], cascade["acc_diff"]) == \
        ("cascade", 80.0, 40.0, -40.0)
    assert cascade["kl_a"] == pytest.approx((8 * _kl(0.8, 0.7) + 2 * _kl(0.8, 0.2)) / 10)


def test_only_evaluated_stages_are_paired(tmp_path):
    folders = _prediction_folders(tmp_path)
    partial = {k: folders[k] for k in ("salad-init", "stage I")}
    partial["stage II active"] = {"seen": folders["stage II active"]["seen"]}
    paired = paired_comparisons(partial, num_resamples=100)
    assert [(r["a"], r["b"]) for r in paired["unseen"]] == [("salad-init", "stage I"), (CASCADE, "salad-init"),
                                                            (CASCADE, "stage I")]
    assert ("stage I", "stage II active") in [(r["a"], r["b"]) for r in paired["seen"]]
    assert paired_comparisons({}, num_resamples=10) == {"num_resamples": 10, "seed": 0, "seen": [], "unseen": []}


def test_mean_choice_kl_averages_the_tasks(tmp_path):
    folder = _write_predictions(tmp_path / "run", [0.8] * 5 + [0.3] * 5)
    assert mean_choice_kl(folder) == pytest.approx(_kl(0.8, 0.3) / 2)


def test_goal_checks_from_paired_results(tmp_path):
    results = _paired_results(tmp_path)
    results["evaluations"]["stage I"]["seen"]["average"]["text_acc"] = 48.5  # a 1.5-point text drop
    results["summary"] = summary_rows(results["evaluations"])
    goals = {g["goal"]: g for g in goal_checks(results)}
    assert len(goals) == 10
    init_seen = goals["Stage I speech accuracy above salad-init (paired 95 % interval above 0), seen voice"]
    assert init_seen["met"] and "30.0 → 90.0 %" in init_seen["value"] and "gained / lost 6 / 0" in init_seen["value"]
    assert not goals["Stage I speech accuracy above salad-init (paired 95 % interval above 0), unseen voice"]["met"]
    cascade = goals["speech accuracy at or above the ASR cascade on every voice"]
    assert cascade["met"] is False and cascade["value"].startswith("stage II active (the exported model)")
    assert "unseen: speech 40.0 vs cascade 80.0 %" in cascade["value"] and "stage I seen" in cascade["value"]
    assert goals["Stage I at least halves salad-init's choice KL(base text ‖ speech), seen voice"]["met"]
    unseen_kl = goals["Stage I at least halves salad-init's choice KL(base text ‖ speech), unseen voice"]
    assert unseen_kl["met"] is False and "0.59× salad-init's" in unseen_kl["value"]
    assert goals["Stage II active ≥ uniform at the same budget, seen voice"]["met"]
    active_unseen = goals["Stage II active ≥ uniform at the same budget, unseen voice"]
    assert active_unseen["met"] is False and "active − uniform -20.0 [" in active_unseen["value"]
    text = goals["text accuracy within 1 point of the base LLM (every trained model)"]
    assert text["met"] is False and "1.5 points (stage I)" in text["value"]
    assert goals["unseen voice at most 3 points below the seen one (every trained model)"]["met"] is False
    assert goals["make demo within 45 minutes"]["met"] is None  # only two stages have run


def test_goal_checks_met_cases_and_not_measured(tmp_path):
    results = _paired_results(tmp_path)
    for row in results["paired"]["unseen"]:
        if row["a"] == CASCADE:
            row.update(acc_a=30.0, acc_diff=row["acc_b"] - 30.0)
    results["stages"] = [{"stage": s, "seconds": 200.0, "peak_rss_gib": 1.0} for s in STAGES if s != "report"]
    goals = {g["goal"]: g for g in goal_checks(results)}
    assert goals["speech accuracy at or above the ASR cascade on every voice"]["met"]
    time = goals["make demo within 45 minutes"]
    assert time["met"] is False and time["value"] == f"{200 * (len(STAGES) - 1) / 60:.1f} min (sum of the stage times)"
    results["stages"] = [{**t, "seconds": 60.0} for t in results["stages"]]
    assert {g["goal"]: g for g in goal_checks(results)}["make demo within 45 minutes"]["met"]
    # stages that ran two at a time: the wall clock counts, not the sum
    results["stages"] = [{**t, "seconds": 300.0, "finished_at": f"2026-01-01T{i // 2:02d}:05:00"}
                         for i, t in enumerate(results["stages"])]
    time = {g["goal"]: g for g in goal_checks(results)}["make demo within 45 minutes"]
    wall = 5 * ((len(STAGES) - 1) // 2) + 5 * ((len(STAGES) - 1) % 2)
    assert time["met"] is True and time["value"].startswith(f"{wall:.1f} min of wall clock")
    results.update(paired={}, export=None)
    unmeasured = [g for g in goal_checks(results) if g["met"] is None]
    assert len(unmeasured) == 7 and all(g["value"] == "–" for g in unmeasured)


def test_final_model_is_the_exported_one_else_the_best_trained(tmp_path):
    results = _paired_results(tmp_path)
    assert final_model(results) == ("stage II active", "the exported model")
    results["export"] = None  # mean speech: stage I 65, active 70, uniform 75
    assert final_model(results)[0] == "stage II uniform"
    assert final_model({"paired": {}}) == (None, "")


def test_report_renders_paired_tables_and_kl_column(tmp_path):
    results = _paired_results(tmp_path)
    for by_voice in results["evaluations"].values():
        by_voice["seen"]["average"]["choice_kl"] = 0.123
    results["summary"] = summary_rows(results["evaluations"])
    results["goals"] = goal_checks(results)
    write_report(results, tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    assert "| gap | choice KL |" in text and "| 0.123 |" in text
    assert "## Paired comparisons" in text and "### unseen voice (`piper`), 10 items" in text
    assert "| salad-init → stage I | 30.0 | 90.0 | +60.0 [" in text
    assert f"| {CASCADE} → stage II active | 80.0 | 40.0 | -40.0 [" in text
    assert "| Stage II active ≥ uniform at the same budget, seen voice | speech 100.0 vs 90.0 %" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["paired"]["seen"][0]["gained"] == 6 and saved["paired"]["num_resamples"] == 2000


def test_collect_results_reads_the_prediction_folders_of_finished_evaluations(tmp_path):
    runner = StageRunner(tmp_path, log=lambda _: None)
    _prediction_folders(tmp_path)
    for stage, model in (("eval_init", "salad-init"), ("eval_stage1", "stage1")):
        result = {"checkpoint": str(tmp_path / model), "seen": _eval(50.0, 30.0, 40.0, "flite:slt"),
                  "unseen": _eval(50.0, 25.0, 40.0, "piper")}
        runner.run(stage, lambda result=result: result)
    preset = SimpleNamespace(to_dict=lambda: {"name": "fixture", "seen_voice": "flite:slt", "unseen_voice": "piper"},
                             recipe={"adapter_type": "transcript"}, seed=0)
    pipeline = SimpleNamespace(runner=runner, preset=preset, out=tmp_path, data=tmp_path / "data")
    results = collect_results(pipeline)
    assert [(r["a"], r["b"]) for r in results["paired"]["seen"]] == [("salad-init", "stage I"),
                                                                     (CASCADE, "salad-init"), (CASCADE, "stage I")]
    kl = {(r["stage"], r["voice"]): r["choice_kl"] for r in results["summary"]}
    assert kl[("stage I", "seen")] == pytest.approx((0.0 + _kl(0.8, 0.3) / 5) / 2)  # t1 is 0, q9 of t2 off
    goals = {g["goal"]: g["met"] for g in results["goals"]}
    assert goals["Stage I speech accuracy above salad-init (paired 95 % interval above 0), seen voice"]
    assert goals["Stage II active ≥ uniform at the same budget, seen voice"] is None


