"""The demo's report: OUT/results.json (every number), OUT/REPORT.md (tables + plots) and OUT/plots/*.png.

`collect_results(pipeline)` gathers the finished stages' records into one dict, with the paired comparisons of the
models on each voice's held-out items (from the prediction folders the evaluations wrote) and the goal verdicts;
`write_report(results, out)` renders it and is a pure function of that dict (tests render a fixture).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from evaluation.compare import choice_kl_by_benchmark, compare_sides, comparison_table
from spans import atomic_write_text, atomic_writer

from .presets import RECIPE_NOTES, STAGE2_STARTS, TRAINABLE, TRAINABLE_NOTES, TRAINABLE_WHY
from .stages import busy_seconds

REFERENCE = "naive reference"  # an untrained adapter on encoder frames (the eval_reference stage)
EVAL_STAGES = ((REFERENCE, "eval_reference"), ("salad-init", "eval_init"), ("stage I", "eval_stage1"),
               ("stage II active", "eval_stage2_active"), ("stage II uniform", "eval_stage2_uniform"))
TRAIN_STAGES = (("stage I", "stage1"), ("stage II active", "stage2_active"), ("stage II uniform", "stage2_uniform"))
SUMMARY_KEYS = ("base_text_acc", "text_acc", "speech_acc", "cascade_acc", "gap", "chance_acc", "n", "agreement",
                "choice_tv", "choice_kl")
VOICES = ("seen", "unseen")
TRAINED = ("stage I", "stage II active", "stage II uniform")
CASCADE = "ASR cascade"  # Whisper transcript -> base LLM, from salad-init's evaluation (the same for every model)
# (A, B) pairs on the same items, B − A; uniform → active is the selection's effect at an equal budget, and
# salad-init → stage II is what the whole method (Stage I + Stage II) did
PAIRS = (("salad-init", "stage I"), ("stage I", "stage II active"), ("stage I", "stage II uniform"),
         ("salad-init", "stage II active"), ("salad-init", "stage II uniform"),
         ("stage II uniform", "stage II active"), *((CASCADE, model) for model in ("salad-init", *TRAINED)))
DEMO_BUDGET_MINUTES = 45
CURVE_KEYS = ("kd_loss", "misalignment", "forgetting")
SCALAR_PREFIX = "adapter/"  # the trainer logs the adapter's learned scalars under this prefix


def gap_closed(gap_init: float | None, gap: float | None) -> float | None:
    """Percent of salad-init's gap closed: 100·(gap_init − gap)/gap_init (None when gap_init <= 0)."""
    if gap_init is None or gap is None or gap_init <= 0:
        return None
    return 100.0 * (gap_init - gap) / gap_init


def summary_rows(evaluations: dict) -> list[dict]:
    """One row per (stage, voice) with the average accuracies, the gap and the gap closed vs salad-init."""
    rows = []
    init = evaluations.get("salad-init", {})
    naive = evaluations.get(REFERENCE, {})
    for stage, by_voice in evaluations.items():
        for role in ("seen", "unseen"):
            if role not in by_voice:
                continue
            avg = by_voice[role].get("average", {})
            row = {"stage": stage, "voice": role, "voice_name": by_voice[role].get("voice")}
            row.update({k: avg.get(k) for k in SUMMARY_KEYS})
            row["gap_closed_pct"] = gap_closed(init.get(role, {}).get("average", {}).get("gap"), avg.get("gap"))
            row["gap_closed_vs_naive_pct"] = gap_closed(naive.get(role, {}).get("average", {}).get("gap"),
                                                        avg.get("gap"))
            rows.append(row)
    return rows


def _pair(results: dict, voice: str, a: str, b: str) -> dict | None:
    return next((r for r in (results.get("paired") or {}).get(voice, []) if (r["a"], r["b"]) == (a, b)), None)


def _diff_text(row: dict, difference: str) -> str:
    low, high = row["acc_diff_ci"]
    return (f"{difference} {row['acc_diff']:+.1f} [{low:+.1f}, {high:+.1f}] points, gained / lost {row['gained']} / "
            f"{row['lost']}, McNemar p {row['mcnemar_p']:.3g}")


def goal_checks(results: dict) -> list[dict]:
    """The issue's goals, each with the numbers it rests on and whether it is met (None: not measured).

    Paired goals use `results["paired"]` (items pooled over the tasks); the text and unseen-voice goals use the
    summary's task averages."""
    summary = results.get("summary", [])
    return [*(_goal_stage1_above_init(results, v) for v in VOICES), _goal_cascade(results),
            *(_goal_kl_halved(results, v) for v in VOICES), *(_goal_active(results, v) for v in VOICES),
            _goal_text(summary), _goal_unseen(summary), _goal_time(results.get("stages", []))]


def _goal_stage1_above_init(results: dict, voice: str) -> dict:
    row = _pair(results, voice, "salad-init", "stage I")
    value = "–" if row is None else \
        f"speech {row['acc_a']:.1f} → {row['acc_b']:.1f} %, {_diff_text(row, 'stage I − salad-init')}"
    return {"goal": f"Stage I speech accuracy above salad-init (paired 95 % interval above 0), {voice} voice",
            "value": value, "met": None if row is None else row["acc_diff_ci"][0] > 0}


def final_model(results: dict) -> tuple[str | None, str]:
    """(label, why) of the model the cascade goal judges: the exported Stage II model, else the trained model
    with the best mean paired speech accuracy among those evaluated."""
    best = (results.get("export") or {}).get("best_stage2")
    if best:
        return f"stage II {best}", "the exported model"
    scores = {}
    for model in TRAINED:
        rows = [_pair(results, v, CASCADE, model) for v in VOICES]
        if all(rows):
            scores[model] = sum(r["acc_b"] for r in rows) / len(rows)
    if not scores:
        return None, ""
    return max(scores, key=scores.get), "the best trained model evaluated (no export yet)"


def _goal_cascade(results: dict) -> dict:
    model, why = final_model(results)
    rows = {v: _pair(results, v, CASCADE, model) for v in VOICES} if model else {}
    measured = bool(rows) and all(rows.values())
    parts = [f"{v}: speech {r['acc_b']:.1f} vs cascade {r['acc_a']:.1f} %, {_diff_text(r, 'speech − cascade')}"
             for v, r in rows.items() if r]
    others = [f"{m} {v} {r['acc_diff']:+.1f}" for m in TRAINED if m != model for v in VOICES
              if (r := _pair(results, v, CASCADE, m))]
    value = f"{model} ({why}) — " + "; ".join(parts) if parts else "–"
    if others:
        value += f" (others, speech − cascade: {', '.join(others)})"
    return {"goal": "speech accuracy at or above the ASR cascade on every voice", "value": value,
            "met": all(r["acc_diff"] >= 0 for r in rows.values()) if measured else None}


def _goal_kl_halved(results: dict, voice: str) -> dict:
    row = _pair(results, voice, "salad-init", "stage I")
    measured = row is not None and row["kl_a"] is not None and row["kl_b"] is not None
    value = "–"
    if measured:
        low, high = row["kl_diff_ci"]
        ratio = f"{row['kl_b'] / row['kl_a']:.2f}× salad-init's" if row["kl_a"] > 0 else "salad-init's is 0"
        value = (f"KL {row['kl_a']:.3f} → {row['kl_b']:.3f} nats ({ratio}; B − A {row['kl_diff']:+.3f} "
                 f"[{low:+.3f}, {high:+.3f}])")
    return {"goal": f"Stage I at least halves salad-init's choice KL(base text ‖ speech), {voice} voice",
            "value": value, "met": row["kl_b"] <= 0.5 * row["kl_a"] if measured else None}


def _goal_active(results: dict, voice: str) -> dict:
    row = _pair(results, voice, "stage II uniform", "stage II active")
    value = "–" if row is None else \
        f"speech {row['acc_b']:.1f} vs {row['acc_a']:.1f} %, {_diff_text(row, 'active − uniform')}"
    return {"goal": f"Stage II active ≥ uniform at the same budget, {voice} voice", "value": value,
            "met": None if row is None else row["acc_diff"] >= 0}


def _goal_text(summary: list[dict]) -> dict:
    drops = {}
    for r in summary:
        if r["stage"] in TRAINED and r.get("text_acc") is not None and r.get("base_text_acc") is not None:
            drops[r["stage"]] = max(drops.get(r["stage"], -math.inf), r["base_text_acc"] - r["text_acc"])
    worst = max(drops, key=drops.get) if drops else None
    value = f"largest drop {drops[worst]:.1f} points ({worst})" if drops else "–"
    return {"goal": "text accuracy within 1 point of the base LLM (every trained model)", "value": value,
            "met": None if not drops else drops[worst] <= 1.0}


def _goal_unseen(summary: list[dict]) -> dict:
    losses = {}
    for stage in TRAINED:
        by_voice = {r["voice"]: r.get("speech_acc") for r in summary if r["stage"] == stage}
        if by_voice.get("seen") is not None and by_voice.get("unseen") is not None:
            losses[stage] = by_voice["seen"] - by_voice["unseen"]
    return {"goal": "unseen voice at most 3 points below the seen one (every trained model)",
            "value": ", ".join(f"{stage}: {_fmt(loss)}" for stage, loss in losses.items()) or "–",
            "met": None if not losses else max(losses.values()) <= 3.0}


def _goal_time(stages: list[dict]) -> dict:
    from .pipeline import STAGES

    # the stage records are the run's clock; a total is only meaningful once every stage before the report ran
    complete = set(STAGES) - {"report"} <= {t["stage"] for t in stages}
    minutes, value = _run_minutes([t for t in stages if t["stage"] != "report"]) if complete else (None, None)
    value = "not every stage has run" if minutes is None else value
    return {"goal": f"make demo within {DEMO_BUDGET_MINUTES} minutes", "value": value,
            "met": None if minutes is None else minutes <= DEMO_BUDGET_MINUTES}


def _run_minutes(stages: list[dict]) -> tuple[float, str]:
    """(minutes, description): the time some stage was running (stages side by side counted once), or, for
    records without end times, the sum of the stage times."""
    total = sum(t["seconds"] for t in stages) / 60.0
    if not all("finished_at" in t for t in stages):
        return total, f"{total:.1f} min (sum of the stage times)"
    wall = busy_seconds(stages) / 60.0
    return wall, f"{wall:.1f} min of wall clock, stages side by side ({total:.1f} min of stage times)"


def training_curves(history: list[dict], step_offset: int = 0) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of kd_loss, misalignment (M), forgetting (F) and the adapter's learned scalars
    (`adapter/...`) from a trainer log_history; `step_offset` places a run that continued from a checkpoint
    (Stage II) after the steps before it."""
    curves = {k: [] for k in CURVE_KEYS}
    for entry in history:
        scalars = [key for key in entry if key.startswith(SCALAR_PREFIX)]
        for key in (*CURVE_KEYS, *scalars):
            curves.setdefault(key, [])
            if key in entry and entry[key] is not None and "step" in entry:
                curves[key].append((int(entry["step"]) + step_offset, float(entry[key])))
    return curves


def mean_choice_kl(folder) -> float | None:
    """Mean choice KL(base text ‖ speech) of one evaluation, unweighted over the tasks as the table's accuracies."""
    by_task = choice_kl_by_benchmark(folder)
    values = list(by_task.values())
    return None if not values or None in values else sum(values) / len(values)


def paired_comparisons(folders: dict[str, dict[str, Path]], num_resamples: int = 10_000, seed: int = 0) -> dict:
    """{"num_resamples", "seed", voice: [`compare_sides` row per pair in PAIRS]} on each voice's held-out items;
    `folders` = {model label: {voice: evaluation folder}}, the cascade read from salad-init's. Pairs whose
    models have no evaluation yet are left out."""
    out = {"num_resamples": num_resamples, "seed": seed}
    for voice in VOICES:
        sides = {label: (by_voice[voice], "speech") for label, by_voice in folders.items() if voice in by_voice}
        if "salad-init" in sides:
            sides[CASCADE] = (sides["salad-init"][0], "cascade")
        out[voice] = [compare_sides(sides[a], sides[b], [a, b], num_resamples, seed)
                      for a, b in PAIRS if a in sides and b in sides]
    return out


def _evaluations(rec, out: Path) -> tuple[dict, dict]:
    """(evaluations with each average's choice KL, {label: {voice: predictions folder}}) of the finished evals."""
    evaluations, folders = {}, {}
    for label, stage in EVAL_STAGES:
        result = rec(stage)
        if not result:
            continue
        evaluations[label] = {role: {k: result[role][k] for k in ("benchmarks", "average", "voice", "config")
                                     if k in result[role]} for role in VOICES if role in result}
        for role, evaluation in evaluations[label].items():
            folder = out / "eval" / Path(result.get("checkpoint", "?")).name / role  # DemoPipeline._evaluate's
            if (folder / "predictions").is_dir():
                folders.setdefault(label, {})[role] = folder
                evaluation["average"] = {**evaluation.get("average", {}), "choice_kl": mean_choice_kl(folder)}
    return evaluations, folders


def _stage2_start_step(rec, stage2: dict) -> int:
    """Stage I's step where this Stage II run starts (run folders from before `start_step` was recorded started
    at the pre-decay checkpoint)."""
    if "start_step" in stage2:
        return stage2["start_step"]
    pre_decay_state = Path((rec("stage1") or {}).get("pre_decay") or "/nonexistent") / "trainer_state.json"
    return json.loads(pre_decay_state.read_text())["global_step"] if pre_decay_state.is_file() else 0


def _training(rec) -> dict:
    training = {}
    for label, stage in TRAIN_STAGES:
        result = rec(stage)
        if result and result.get("log_history") and Path(result["log_history"]).is_file():
            history = json.loads(Path(result["log_history"]).read_text())
            offset = _stage2_start_step(rec, result) if stage.startswith("stage2") else 0
            training[label] = {"output_dir": result["output_dir"], "steps": result["steps"], "start_step": offset,
                               "curves": training_curves(history, offset)}
    return training


def collect_results(pipeline) -> dict:
    """Everything the run measured, from the stage records (stages not run yet are simply absent)."""
    runner, p = pipeline.runner, pipeline.preset

    def rec(name):
        return runner.record(name)["result"] if runner.done(name) else None

    evaluations, folders = _evaluations(rec, Path(pipeline.out))
    selection = {kind: rec(f"select_{kind}") for kind in ("active", "uniform") if rec(f"select_{kind}")}
    adapter_type = p.recipe.get("adapter_type", "mlp")
    results = {
        "preset": p.to_dict(),
        "recipe": {**p.recipe, "note": RECIPE_NOTES.get(adapter_type, "")},
        "first_look": rec("first_look"),
        "eval_sets": rec("eval_sets"),
        "data": {"stage1": rec("stage1_data") or {}, "pool": str(pipeline.data / "pool.jsonl"),
                 "pool_excluded_tasks": _pool_exclusions(p)},
        "evaluations": evaluations,
        "summary": summary_rows(evaluations),
        "paired": paired_comparisons(folders, seed=p.seed),
        "training": _training(rec),
        "selection": selection,
        "export": rec("export"),
        "stages": sorted(runner.timings(), key=lambda t: _stage_order(t["stage"])),
    }
    results["goals"] = goal_checks(results)
    return results


def _stage_order(name: str) -> int:
    from .pipeline import STAGES

    return STAGES.index(name) if name in STAGES else len(STAGES)


def _pool_exclusions(preset) -> list[str]:
    from .demo_data import pool_exclusions
    from .pipeline import EVAL_CANDIDATES

    return pool_exclusions(EVAL_CANDIDATES)


# ---------------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=110)
    _plt().close(fig)
    return path


def plot_stages(summary: list[dict], path: Path) -> Path:
    """Speech / text (base and SALAD) / cascade accuracy, the gap and the speech–text choice distance per stage,
    one line per voice."""
    plt = _plt()
    stages = list(dict.fromkeys(r["stage"] for r in summary))
    fig, (ax_acc, ax_gap, ax_tv) = plt.subplots(1, 3, figsize=(15, 3.8))
    for role, style in (("seen", "-"), ("unseen", "--")):
        rows = {r["stage"]: r for r in summary if r["voice"] == role}
        if not rows:
            continue
        x = [i for i, s in enumerate(stages) if s in rows]
        for key, color in (("speech_acc", "tab:red"), ("base_text_acc", "tab:blue"), ("text_acc", "tab:purple"),
                           ("cascade_acc", "tab:green")):
            if key == "text_acc" and role == "unseen":
                continue  # text does not depend on the voice
            values = [rows[stages[i]].get(key) for i in x]
            if all(v is not None for v in values):
                label = {"text_acc": "SALAD text", "base_text_acc": "base LLM text"}.get(key, key.replace("_acc", ""))
                ax_acc.plot(x, values, style, marker="o", color=color, label=f"{label} ({role})")
        gaps = [rows[stages[i]].get("gap") for i in x]
        if all(g is not None for g in gaps):
            ax_gap.plot(x, gaps, style, marker="o", color="k", label=f"gap ({role} voice)")
        distances = [rows[stages[i]].get("choice_tv") for i in x]
        if all(d is not None for d in distances):
            ax_tv.plot(x, distances, style, marker="o", color="tab:orange", label=f"choice TV ({role} voice)")
    chance = [r["chance_acc"] for r in summary if r.get("chance_acc") is not None]
    if chance:
        ax_acc.axhline(chance[0], color="grey", linestyle=":", linewidth=1, label="chance")
    ax_acc.set_ylabel("average accuracy (%)")
    ax_gap.set_ylabel("gap = base text − speech (points)")
    ax_gap.axhline(0, color="grey", linewidth=0.5)
    ax_tv.set_ylabel("speech vs text choice distance (TV)")
    ax_tv.set_ylim(bottom=0)
    for ax in (ax_acc, ax_gap, ax_tv):
        ax.set_xticks(range(len(stages)), stages, rotation=15)
        ax.legend(fontsize=7)
    ax_acc.set_title("Accuracy per stage")
    ax_gap.set_title("Text–speech gap per stage")
    ax_tv.set_title("Speech answers vs text answers")
    return _save(fig, path)


def plot_training(training: dict, path: Path) -> Path:
    """kd_loss, M, F and each learned adapter scalar against the step, one line per training stage."""
    plt = _plt()
    scalars = sorted({key for stage in training.values() for key in stage["curves"] if key.startswith(SCALAR_PREFIX)})
    keys = (*CURVE_KEYS, *scalars)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    titles = {"kd_loss": "distillation loss (KL)", "misalignment": "M: misalignment (probe)",
              "forgetting": "F: forgetting (probe)",
              **{key: f"adapter: {key.removeprefix(SCALAR_PREFIX)}" for key in scalars}}
    for ax, key in zip(axes[0], keys):
        for label, stage in training.items():
            series = stage["curves"].get(key) or []
            if series:
                steps, values = zip(*series)
                ax.plot(steps, values, marker="." if len(series) < 30 else None, label=label)
        ax.set_title(titles[key])
        ax.set_xlabel("step (Stage II continues from the Stage I step it starts at)")
        if ax.has_data():
            ax.legend(fontsize=7)
    return _save(fig, path)


def plot_misalignment(selection: dict, path: Path) -> Path:
    """M(c) per cluster of the Stage II pool, with the texts each selection drew from it."""
    plt = _plt()
    fig, (ax_m, ax_n) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    clusters = next(iter(selection.values()))["clusters"]
    x = [c["cluster"] for c in clusters]
    ax_m.bar(x, [c["misalignment"] or 0.0 for c in clusters], color=["lightgray" if c["dropped"] else "tab:red"
                                                                     for c in clusters])
    ax_m.set_ylabel("M(c) (Stage I model)")
    ax_m.set_title("Misalignment per cluster (gray: dropped for CER)")
    width = 0.8 / max(1, len(selection))
    for k, (kind, result) in enumerate(selection.items()):
        ax_n.bar([c["cluster"] + (k - (len(selection) - 1) / 2) * width for c in result["clusters"]],
                 [c["selected"] for c in result["clusters"]], width, label=f"{kind} (γ={result['gamma']:g})")
    ax_n.set_ylabel("texts selected")
    ax_n.set_xlabel("cluster")
    ax_n.legend(fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- markdown
def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(results: dict, plots: dict[str, str]) -> str:
    p = results["preset"]
    lines = ["# SALAD demo report", "",
             f"Preset `{p['name']}`. Base LLM SmolLM2-135M-Instruct, speech encoder Whisper tiny.en (frozen). "
             f"Eval voices: seen = `{p['seen_voice']}` (a training voice), unseen = `{p['unseen_voice']}` "
             "(never used in training)."]
    for section in (_results_markdown(results), _paired_markdown(results), _goals_markdown(results),
                    _recipe_markdown(results), _first_look_markdown(results), _data_markdown(results),
                    _timing_markdown(results), _plots_markdown(plots), _export_markdown(results)):
        lines += section
    return "\n".join(lines) + "\n"


def _results_markdown(results: dict) -> list[str]:
    lines = ["", "## Results", "",
             "Average over the eval tasks; accuracy in %, gap = base LLM text − SALAD speech (points); gap closed "
             "relative to the naive reference (an untrained adapter on encoder frames) and to salad-init; choice "
             "KL = mean KL(base LLM text ‖ SALAD speech) of the choice distributions (nats).", "",
             "| stage | voice | base text | SALAD text | SALAD speech | cascade | gap | choice KL | "
             "gap closed vs naive % | gap closed vs salad-init % | speech = text answer % | choice TV |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["summary"]:
        lines.append(f"| {r['stage']} | {r['voice']} ({r.get('voice_name') or ''}) | {_fmt(r['base_text_acc'])} | "
                     f"{_fmt(r['text_acc'])} | {_fmt(r['speech_acc'])} | {_fmt(r['cascade_acc'])} | "
                     f"{_fmt(r['gap'])} | {_fmt(r.get('choice_kl'), 3)} | "
                     f"{_fmt(r.get('gap_closed_vs_naive_pct'))} | {_fmt(r['gap_closed_pct'])} | "
                     f"{_fmt(r.get('agreement'))} | {_fmt(r.get('choice_tv'), 3)} |")
    chance = [r["chance_acc"] for r in results["summary"] if r.get("chance_acc") is not None]
    n = [r["n"] for r in results["summary"] if r.get("n")]
    if chance:
        lines += ["", f"Chance: {chance[0]:.1f} %. {n[0] if n else '?'} held-out spoken questions per voice; a "
                  "difference of accuracies needs about ±10 points to be resolved at this size (per-task 95 % "
                  "intervals: `eval/*/*/results.json`; paired intervals below). The last two columns compare each "
                  "spoken answer with the base LLM's answer to the same question in text "
                  "(`evaluation.metrics.speech_text_agreement`): the share of identical answers and the mean "
                  "total-variation distance between the two choice distributions (0 = speech behaves exactly as "
                  "text); they, and the choice KL, move with smaller changes than accuracy does."]
    return lines


def _paired_markdown(results: dict) -> list[str]:
    paired = results.get("paired") or {}
    if not any(paired.get(v) for v in VOICES):
        return []
    lines = ["", "## Paired comparisons", "",
             "Each pair on the same held-out items of one voice (`evaluation.compare.compare_sides`), pooled over "
             "the tasks (so accuracies can differ slightly from the task averages above). B − A in points with a "
             f"paired-bootstrap 95 % interval ({paired.get('num_resamples')} resamples); gained / lost: items B "
             "answers right where A was wrong / the reverse; McNemar's exact p. KL = mean KL(base LLM text ‖ side) "
             "in nats, the side being a model's speech or the cascade's answers to the Whisper transcript. "
             f"{CASCADE} → model rows: model speech − cascade."]
    voices = {"seen": results["preset"].get("seen_voice"), "unseen": results["preset"].get("unseen_voice")}
    for voice in VOICES:
        rows = paired.get(voice) or []
        if rows:
            lines += ["", f"### {voice} voice (`{voices[voice]}`), {rows[0]['n']} items", "", *comparison_table(rows)]
    return lines


def _goals_markdown(results: dict) -> list[str]:
    if not results.get("goals"):
        return []
    lines = ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    for g in results["goals"]:
        verdict = "–" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"| {g['goal']} | {g['value']} | {verdict} |")
    return lines


def _recipe_markdown(results: dict) -> list[str]:
    p, recipe = results["preset"], results["recipe"]
    trainable = p.get("trainable", "adapter")
    arguments = ", ".join(f"{k}={v!r}" for k, v in recipe.items() if k != "note")
    return ["", "## Recipe", "", f"`build_salad(llm, whisper, {arguments})`", "", recipe.get("note", ""), "",
            f"Training: cross-modal distillation KL(teacher ‖ student); what trains: `{trainable}`"
            f" — {TRAINABLE_NOTES.get(trainable, '')} Warmup–stable–decay; Stage II starts "
            f"from {STAGE2_STARTS.get(p.get('stage2_start', 'pre_decay'), '?')} and decays over its whole "
            "length."
            + (f" {TRAINABLE_WHY}" if trainable == TRAINABLE else "")]


def _first_look_markdown(results: dict) -> list[str]:
    fl = results.get("first_look")
    if not fl:
        return []
    return ["", "## First look (salad-init, fresh process, AutoModel + trust_remote_code)", "",
            f"Real recorded speech `{Path(fl['audio']).name}` ({fl['audio_seconds']} s); reference: "
            f"\"{fl.get('reference')}\". Prompt: \"{fl['prompt']}\".", "",
            f"Answer: \"{fl['answer']}\" — {fl['tokens_per_second']} tokens/s, peak memory "
            f"{fl['peak_rss_gib']:.2f} GiB.", "", f"**{fl['note']}**"]


def _data_markdown(results: dict) -> list[str]:
    lines = ["", "## Which texts went where", ""]
    es = results.get("eval_sets") or {}
    for task, d in (es.get("screen") or {}).items():
        lines.append(f"* eval `{task}`: base text {d['base_text_acc']:.1f} % vs chance {d['chance_acc']:.1f} % "
                     f"→ {'kept' if d['kept'] else 'dropped (not clearly above chance)'}")
    s1 = results["data"].get("stage1") or {}
    if s1:
        lines.append(f"* Stage I (narrow narrative domain): {s1.get('documents')} span documents + "
                     f"{s1.get('replay_documents')} disjoint text-replay documents from "
                     + ", ".join(f"`{s}`" for s in s1.get("sources", [])))
    lines.append("* Stage II broad pool: packaged OpenAI evals texts, excluding "
                 + ", ".join(f"`{t}`" for t in results["data"].get("pool_excluded_tasks", [])))
    for kind, sel in results.get("selection", {}).items():
        lines.append(f"* Stage II {kind} selection (γ={sel['gamma']:g}): {sel['selected_texts']} texts of a pool "
                     f"of {sel['pool_size']}")
    return lines


def _timing_markdown(results: dict) -> list[str]:
    lines = ["", "## Time and memory per stage", "", "| stage | seconds | peak RSS (GiB) |", "|---|---|---|"]
    for t in results["stages"]:
        lines.append(f"| {t['stage']} | {t['seconds']:.1f} | {t['peak_rss_gib']:.2f} |")
    lines.append(f"| **total** | {sum(t['seconds'] for t in results['stages']):.1f} | |")
    if results["stages"] and all("finished_at" in t for t in results["stages"]):
        lines.append(f"| **wall clock** (side by side counted once) | {busy_seconds(results['stages']):.1f} | |")
    return lines


def _plots_markdown(plots: dict[str, str]) -> list[str]:
    if not plots:
        return []
    lines = ["", "## Plots", ""]
    titles = {"stages": "Accuracy and gap per stage",
              "training": "Training curves (kd_loss, M, F, the adapter's learned scalars)",
              "misalignment": "Misalignment per cluster (Stage II selection)"}
    for key, rel in plots.items():
        lines += [f"### {titles.get(key, key)}", "", f"![{key}]({rel})", ""]
    return lines


def _export_markdown(results: dict) -> list[str]:
    ex = results.get("export")
    if not ex:
        return []
    return ["", "## Export", "", f"Model `{ex['model']}` (best Stage II: {ex['best_stage2']}), dataset "
            f"`{ex['dataset']}`. Publish with:", "", "```", *ex["publish"], "```", ""]


def write_report(results: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write OUT/results.json, the plots and OUT/REPORT.md; returns their paths."""
    out = Path(out)
    plots: dict[str, str] = {}
    paths: dict[str, Path] = {}
    if results.get("summary"):
        paths["plot_stages"] = plot_stages(results["summary"], out / "plots" / "stages.png")
        plots["stages"] = "plots/stages.png"
    if any(any(c["curves"].values()) for c in results.get("training", {}).values()):
        paths["plot_training"] = plot_training(results["training"], out / "plots" / "training.png")
        plots["training"] = "plots/training.png"
    if results.get("selection"):
        paths["plot_misalignment"] = plot_misalignment(results["selection"], out / "plots" / "misalignment.png")
        plots["misalignment"] = "plots/misalignment.png"
        active = results["selection"].get("active", {}).get("output_dir")
        if active and (Path(active) / "report" / "clusters.png").is_file():  # selection's own P/M/target panels
            shutil.copyfile(Path(active) / "report" / "clusters.png", out / "plots" / "clusters_active.png")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    atomic_write_text(out / "REPORT.md", render_markdown(results, plots))
    paths["results"], paths["report"] = out / "results.json", out / "REPORT.md"
    return paths
