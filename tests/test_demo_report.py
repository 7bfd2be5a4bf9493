"""The demo report renders from a results dict alone: tables with every stage and voice, plots written."""

import json

from salad_demo.report import REFERENCE, gap_closed, goal_checks, summary_rows, training_curves, write_report


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


def test_goal_checks_compute_each_verdict_from_the_summary(tmp_path):
    evaluations = _fixture(tmp_path)["evaluations"]
    evaluations[REFERENCE] = {"seen": _eval(50.0, 10.0, 45.0, "flite:slt"), "unseen": _eval(50.0, 10.0, 45.0, "piper")}
    evaluations["stage I"]["seen"]["average"]["text_acc"] = 48.5  # a 1.5-point text drop
    goals = goal_checks(summary_rows(evaluations))
    by_goal = {g["goal"].split()[0] + g["goal"].split()[1]: g for g in goals}
    # initial (naive) gap 40; stage I gaps 20 (seen) and 25 (unseen) -> mean 22.5 -> 43.75 % closed
    assert not by_goal["StageI"]["met"] and "43.8 % closed" in by_goal["StageI"]["value"]
    assert by_goal["StageII"]["met"]  # active 37.5 vs uniform 32.5
    assert not by_goal["textaccuracy"]["met"] and "1.5" in by_goal["textaccuracy"]["value"]
    assert not by_goal["unseenvoice"]["met"]  # every trained stage loses 5 points on the unseen voice
    results = _fixture(tmp_path)
    results["goals"] = goals
    write_report(results, tmp_path)
    assert "| Stage II active ≥ uniform at the same budget | speech 37.5 vs 32.5 % | yes |" in \
        (tmp_path / "REPORT.md").read_text()
