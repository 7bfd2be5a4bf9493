"""The demo's report: OUT/results.json (every number), OUT/REPORT.md (tables + plots) and OUT/plots/*.png.

`collect_results(pipeline)` gathers the finished stages' records into one dict; `write_report(results, out)`
renders it and is a pure function of that dict (tests render a fixture).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from spans import atomic_write_text, atomic_writer

from .presets import RECIPE_NOTES, TRAINABLE, TRAINABLE_NOTES, TRAINABLE_WHY

REFERENCE = "naive reference"  # an untrained adapter on encoder frames (the eval_reference stage)
EVAL_STAGES = ((REFERENCE, "eval_reference"), ("salad-init", "eval_init"), ("stage I", "eval_stage1"),
               ("stage II active", "eval_stage2_active"), ("stage II uniform", "eval_stage2_uniform"))
TRAIN_STAGES = (("stage I", "stage1"), ("stage II active", "stage2_active"), ("stage II uniform", "stage2_uniform"))
SUMMARY_KEYS = ("base_text_acc", "text_acc", "speech_acc", "cascade_acc", "gap", "chance_acc", "n", "agreement",
                "choice_tv")
CURVE_KEYS = ("kd_loss", "misalignment", "forgetting")


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


def _average_over_voices(summary: list[dict], stage: str, key: str) -> float | None:
    values = [r[key] for r in summary if r["stage"] == stage and r.get(key) is not None]
    return sum(values) / len(values) if values else None


def goal_checks(summary: list[dict]) -> list[dict]:
    """The demo's four goals, each with the numbers it rests on and whether it is met (None: not measured).

    Gaps and accuracies are averaged over the two eval voices; the "initial gap" is the naive reference's (an
    untrained adapter on encoder frames), with salad-init's (the untrained transcript adapter) reported beside it.
    """
    avg = lambda stage, key: _average_over_voices(summary, stage, key)
    checks = []
    gap_naive, gap_init, gap_s1 = avg(REFERENCE, "gap"), avg("salad-init", "gap"), avg("stage I", "gap")
    closed = gap_closed(gap_naive, gap_s1)
    checks.append({"goal": "Stage I closes at least half of the initial gap (naive reference)",
                   "value": f"gap {_fmt(gap_naive)} → {_fmt(gap_s1)} points ({_fmt(closed)} % closed; "
                            f"salad-init's gap {_fmt(gap_init)})",
                   "met": None if closed is None else closed >= 50.0})
    active, uniform = avg("stage II active", "speech_acc"), avg("stage II uniform", "speech_acc")
    checks.append({"goal": "Stage II active ≥ uniform at the same budget",
                   "value": f"speech {_fmt(active)} vs {_fmt(uniform)} %",
                   "met": None if active is None or uniform is None else active >= uniform})
    drops = [r["base_text_acc"] - r["text_acc"] for r in summary
             if r["stage"] != REFERENCE and r.get("text_acc") is not None and r.get("base_text_acc") is not None]
    checks.append({"goal": "text accuracy within 1 point of the base model",
                   "value": f"largest drop {_fmt(max(drops) if drops else None)} points",
                   "met": None if not drops else max(drops) <= 1.0})
    trained = [stage for stage in ("stage I", "stage II active", "stage II uniform")
               if any(r["stage"] == stage for r in summary)]
    losses = {}
    for stage in trained:
        by_voice = {r["voice"]: r.get("speech_acc") for r in summary if r["stage"] == stage}
        if by_voice.get("seen") is not None and by_voice.get("unseen") is not None:
            losses[stage] = by_voice["seen"] - by_voice["unseen"]
    checks.append({"goal": "unseen voice at most 3 points below the training voices",
                   "value": ", ".join(f"{stage}: {_fmt(loss)}" for stage, loss in losses.items()) or "–",
                   "met": None if not losses else max(losses.values()) <= 3.0})
    return checks


def training_curves(history: list[dict], step_offset: int = 0) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of kd_loss, misalignment (M) and forgetting (F) from a trainer log_history;
    `step_offset` places a run that continued from a checkpoint (Stage II) after the steps before it."""
    curves = {k: [] for k in CURVE_KEYS}
    for entry in history:
        for key in CURVE_KEYS:
            if key in entry and entry[key] is not None and "step" in entry:
                curves[key].append((int(entry["step"]) + step_offset, float(entry[key])))
    return curves


def collect_results(pipeline) -> dict:
    """Everything the run measured, from the stage records (stages not run yet are simply absent)."""
    runner, p = pipeline.runner, pipeline.preset

    def rec(name):
        return runner.record(name)["result"] if runner.done(name) else None

    evaluations = {}
    for label, stage in EVAL_STAGES:
        result = rec(stage)
        if result:
            evaluations[label] = {role: {k: result[role][k] for k in ("benchmarks", "average", "voice", "config")
                                         if k in result[role]} for role in ("seen", "unseen") if role in result}
    training = {}
    stage1 = rec("stage1") or {}
    pre_decay_state = Path(stage1.get("pre_decay") or "/nonexistent") / "trainer_state.json"
    stage2_offset = json.loads(pre_decay_state.read_text())["global_step"] if pre_decay_state.is_file() else 0
    for label, stage in TRAIN_STAGES:
        result = rec(stage)
        if result and result.get("log_history") and Path(result["log_history"]).is_file():
            history = json.loads(Path(result["log_history"]).read_text())
            offset = stage2_offset if stage.startswith("stage2") else 0
            training[label] = {"output_dir": result["output_dir"], "steps": result["steps"], "start_step": offset,
                               "curves": training_curves(history, offset)}
    selection = {}
    for kind in ("active", "uniform"):
        result = rec(f"select_{kind}")
        if result:
            selection[kind] = result
    stage1_data = rec("stage1_data") or {}
    adapter_type = p.recipe.get("adapter_type", "mlp")
    return {
        "preset": p.to_dict(),
        "recipe": {**p.recipe, "note": RECIPE_NOTES.get(adapter_type, "")},
        "first_look": rec("first_look"),
        "eval_sets": rec("eval_sets"),
        "data": {"stage1": stage1_data, "pool": str(pipeline.data / "pool.jsonl"),
                 "pool_excluded_tasks": _pool_exclusions(p)},
        "evaluations": evaluations,
        "summary": summary_rows(evaluations),
        "goals": goal_checks(summary_rows(evaluations)),
        "training": training,
        "selection": selection,
        "export": rec("export"),
        "stages": sorted(runner.timings(), key=lambda t: _stage_order(t["stage"])),
    }


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
    """kd_loss, M and F against the step, one line per training stage."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    titles = {"kd_loss": "distillation loss (KL)", "misalignment": "M: misalignment (probe)",
              "forgetting": "F: forgetting (probe)"}
    for ax, key in zip(axes, CURVE_KEYS):
        for label, stage in training.items():
            series = stage["curves"].get(key) or []
            if series:
                steps, values = zip(*series)
                ax.plot(steps, values, marker="." if len(series) < 30 else None, label=label)
        ax.set_title(titles[key])
        ax.set_xlabel("step (Stage II continues from Stage I's pre-decay step)")
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
    p, recipe = results["preset"], results["recipe"]
    lines = ["# SALAD demo report", "",
             f"Preset `{p['name']}`. Base LLM SmolLM2-135M-Instruct, speech encoder Whisper tiny.en (frozen). "
             f"Eval voices: seen = `{p['seen_voice']}` (a training voice), unseen = `{p['unseen_voice']}` "
             "(never used in training).", "",
             "## Results", "",
             "Average over the eval tasks; accuracy in %, gap = base LLM text − SALAD speech (points); gap closed "
             "relative to the naive reference (an untrained adapter on encoder frames) and to salad-init.", "",
             "| stage | voice | base text | SALAD text | SALAD speech | cascade | gap | gap closed vs naive % | "
             "gap closed vs salad-init % | speech = text answer % | choice TV |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["summary"]:
        lines.append(f"| {r['stage']} | {r['voice']} ({r.get('voice_name') or ''}) | {_fmt(r['base_text_acc'])} | "
                     f"{_fmt(r['text_acc'])} | {_fmt(r['speech_acc'])} | {_fmt(r['cascade_acc'])} | "
                     f"{_fmt(r['gap'])} | {_fmt(r.get('gap_closed_vs_naive_pct'))} | {_fmt(r['gap_closed_pct'])} | "
                     f"{_fmt(r.get('agreement'))} | {_fmt(r.get('choice_tv'), 3)} |")
    chance = [r["chance_acc"] for r in results["summary"] if r.get("chance_acc") is not None]
    n = [r["n"] for r in results["summary"] if r.get("n")]
    if chance:
        lines += ["", f"Chance: {chance[0]:.1f} %. {n[0] if n else '?'} held-out spoken questions per voice; a "
                  "difference of accuracies needs about ±10 points to be resolved at this size (per-task 95 % "
                  "intervals: `eval/*/*/results.json`). The last two columns compare each spoken answer with the "
                  "base LLM's answer to the same question in text (`evaluation.metrics.speech_text_agreement`): "
                  "the share of identical answers and the mean total-variation distance between the two choice "
                  "distributions (0 = speech behaves exactly as text); they move with smaller changes than "
                  "accuracy does."]
    if results.get("goals"):
        lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
        for g in results["goals"]:
            verdict = "–" if g["met"] is None else ("yes" if g["met"] else "**no**")
            lines.append(f"| {g['goal']} | {g['value']} | {verdict} |")
    lines += ["", "## Recipe", "", f"`build_salad(llm, whisper, {', '.join(f'{k}={v!r}' for k, v in recipe.items() if k != 'note')})`",
              "", recipe.get("note", ""), "",
              f"Training: cross-modal distillation KL(teacher ‖ student); what trains: `{p.get('trainable', 'adapter')}`"
              f" — {TRAINABLE_NOTES.get(p.get('trainable', 'adapter'), '')} Warmup–stable–decay; Stage II starts "
              "from Stage I's pre-decay checkpoint and decays over its whole length."
              + (f" {TRAINABLE_WHY}" if p.get("trainable", "adapter") == TRAINABLE else "")]
    fl = results.get("first_look")
    if fl:
        lines += ["", "## First look (salad-init, fresh process, AutoModel + trust_remote_code)", "",
                  f"Real recorded speech `{Path(fl['audio']).name}` ({fl['audio_seconds']} s); reference: "
                  f"\"{fl.get('reference')}\". Prompt: \"{fl['prompt']}\".", "",
                  f"Answer: \"{fl['answer']}\" — {fl['tokens_per_second']} tokens/s, peak memory "
                  f"{fl['peak_rss_gib']:.2f} GiB.", "", f"**{fl['note']}**"]
    lines += ["", "## Which texts went where", ""]
    es = results.get("eval_sets") or {}
    for task, d in (es.get("screen") or {}).items():
        lines.append(f"* eval `{task}`: base text {d['base_text_acc']:.1f} % vs chance {d['chance_acc']:.1f} % "
                     f"→ {'kept' if d['kept'] else 'dropped (not clearly above chance)'}")
    s1 = results["data"].get("stage1") or {}
    if s1:
        lines.append(f"* Stage I (narrow narrative domain): {s1.get('documents')} span documents + "
                     f"{s1.get('replay_documents')} disjoint text-replay documents from "
                     + ", ".join(f"`{s}`" for s in s1.get("sources", [])))
    lines.append("* Stage II broad pool: packaged BIG-bench + OpenAI evals texts, excluding "
                 + ", ".join(f"`{t}`" for t in results["data"].get("pool_excluded_tasks", [])))
    for kind, sel in results.get("selection", {}).items():
        lines.append(f"* Stage II {kind} selection (γ={sel['gamma']:g}): {sel['selected_texts']} texts of a pool "
                     f"of {sel['pool_size']}")
    lines += ["", "## Time and memory per stage", "", "| stage | seconds | peak RSS (GiB) |", "|---|---|---|"]
    for t in results["stages"]:
        lines.append(f"| {t['stage']} | {t['seconds']:.1f} | {t['peak_rss_gib']:.2f} |")
    lines.append(f"| **total** | {sum(t['seconds'] for t in results['stages']):.1f} | |")
    if plots:
        lines += ["", "## Plots", ""]
        titles = {"stages": "Accuracy and gap per stage", "training": "Training curves (kd_loss, M, F)",
                  "misalignment": "Misalignment per cluster (Stage II selection)"}
        for key, rel in plots.items():
            lines += [f"### {titles.get(key, key)}", "", f"![{key}]({rel})", ""]
    ex = results.get("export")
    if ex:
        lines += ["## Export", "", f"Model `{ex['model']}` (best Stage II: {ex['best_stage2']}), dataset "
                  f"`{ex['dataset']}`. Publish with:", "", "```", *ex["publish"], "```", ""]
    return "\n".join(lines) + "\n"


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
