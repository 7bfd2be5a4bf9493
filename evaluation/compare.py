"""Paired comparison of evaluation runs on the same items (`salad-eval compare RUN_A RUN_B ...`).

A run is a folder written by `salad-eval` (or the demo): `predictions/<benchmark>.jsonl`, one record per item with
the per-choice log-likelihoods of each mode (`base_text`, `text`, `speech`, `cascade`). Runs are matched item by
item on (benchmark, id); a run whose item set differs is an error naming the difference.

Per run against the first one (the reference A), on the chosen mode (default speech):
* the paired accuracy difference B − A (points) with a paired-bootstrap 95 % interval (items resampled jointly),
  the discordant counts (gained: B right where A was wrong; lost: the reverse) and McNemar's exact p-value;
* the mean choice KL from the base LLM's text distribution to the run's distribution in that mode
  (KL(p_text ‖ p_mode), the paper's misalignment measured on the evaluation items) and its paired difference.
`compare_sides` is one such comparison between two (run, mode) sides whose modes may differ, e.g. a model's
speech against the ASR cascade's answers.

`gap_by_cascade_bucket` is the robustness view: the text-speech gap on the items where the ASR cascade answers
correctly vs the ones where it does not (or any other per-item bucketing, e.g. transcript WER bands).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .metrics import choice_distribution, paired_bootstrap_gap_ci

REFERENCE_MODE = "base_text"


# ------------------------------------------------------------------------------------------------ loading
def load_predictions(run: str | Path) -> dict[tuple[str, str], dict]:
    """{(benchmark, item id): record} of a run folder (or its predictions/ folder).

    A benchmark named with a slash (a BIG-bench subtask such as "arithmetic/1_digit_multiplication") is written as
    predictions/arithmetic/1_digit_multiplication.jsonl, so files are found in subfolders too and the benchmark is
    the path below predictions/ without ".jsonl"."""
    folder = Path(run)
    if (folder / "predictions").is_dir():
        folder = folder / "predictions"
    files = sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []
    if not files:
        raise ValueError(f"{run}: no predictions/<benchmark>.jsonl files (is it a salad-eval output folder?)")
    records = {}
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                records[(path.relative_to(folder).with_suffix("").as_posix(), str(record["id"]))] = record
    return records


def check_same_items(runs: Mapping[str, Mapping[tuple, dict]]) -> list[tuple[str, str]]:
    """The shared item keys (sorted); ValueError naming the items a run lacks or adds vs the first run."""
    names = list(runs)
    reference = set(runs[names[0]])
    for name in names[1:]:
        keys = set(runs[name])
        if keys != reference:
            missing, extra = sorted(reference - keys), sorted(keys - reference)
            show = lambda ks: ", ".join(f"{b}/{i}" for b, i in ks[:5]) + (" ..." if len(ks) > 5 else "")
            raise ValueError(f"runs {names[0]!r} and {name!r} scored different items: {name!r} lacks "
                             f"{len(missing)} ({show(missing) or '-'}) and adds {len(extra)} ({show(extra) or '-'})")
    return sorted(reference)


def _mode_field(record: dict, mode: str, run: str) -> dict:
    if mode not in record:
        raise ValueError(f"run {run!r}: item {record.get('id')!r} has no {mode!r} scores "
                         f"(modes present: {', '.join(k for k, v in record.items() if isinstance(v, dict))})")
    return record[mode]


# ------------------------------------------------------------------------------------------------ statistics
def choice_kl(reference_logprobs: Sequence[float], logprobs: Sequence[float]) -> float:
    """KL(p_ref ‖ p) in nats between two choice distributions (softmax of the per-choice log-likelihoods)."""
    if len(reference_logprobs) != len(logprobs):
        raise ValueError(f"choice KL needs the same choices, got {len(reference_logprobs)} and {len(logprobs)}")
    p, q = choice_distribution(reference_logprobs), choice_distribution(logprobs)
    with np.errstate(divide="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return float(terms.sum())


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs against 1/2."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2.0**n
    return float(min(1.0, 2.0 * tail))


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], num_resamples: int = 10_000,
                          confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean(b) − mean(a), low, high): percentile interval resampling items jointly for both runs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"a paired difference needs the same non-empty items, got {a.size} and {b.size}")
    if num_resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("num_resamples must be >= 1 and confidence in (0, 1)")
    diff = b - a
    rng = np.random.default_rng(seed)
    samples = diff[rng.integers(0, diff.size, size=(num_resamples, diff.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    point = float(diff.mean())
    return point, float(min(low, point)), float(max(high, point))


def paired_accuracy(a_correct: Sequence[bool], b_correct: Sequence[bool], num_resamples: int = 10_000,
                    seed: int = 0) -> dict:
    """Accuracy of A and B, B − A in points with its paired-bootstrap 95 % interval, gained / lost, McNemar p."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    diff, low, high = paired_bootstrap_diff(100.0 * a, 100.0 * b, num_resamples, seed=seed)
    gained, lost = int((b & ~a).sum()), int((a & ~b).sum())
    return {"n": int(a.size), "acc_a": float(100.0 * a.mean()), "acc_b": float(100.0 * b.mean()),
            "acc_diff": diff, "acc_diff_ci": [low, high], "gained": gained, "lost": lost,
            "mcnemar_p": mcnemar_exact_p(gained, lost)}


# ------------------------------------------------------------------------------------------------ comparing
def _per_item(records: Mapping[tuple, dict], keys: Sequence[tuple], mode: str, run: str):
    correct, kls = [], []
    for key in keys:
        record = records[key]
        scores = _mode_field(record, mode, run)
        correct.append(bool(scores["correct"]))
        reference = record.get(REFERENCE_MODE)
        kls.append(choice_kl(reference["logprobs"], scores["logprobs"]) if reference else math.nan)
    return np.asarray(correct), np.asarray(kls)


def compare_runs(runs: Sequence[str | Path], labels: Sequence[str] | None = None, mode: str = "speech",
                 num_resamples: int = 10_000, seed: int = 0) -> dict:
    """Compare every run with the first on the same items (see the module doc). Returns a JSON-ready dict:
    {"mode", "n", "runs": [{"label", "path", "acc", "kl"}], "comparisons": [{"a", "b", accuracy fields,
    "kl_a", "kl_b", "kl_diff", "kl_diff_ci"}]}; KL fields are None when a run has no base_text scores."""
    if len(runs) < 2:
        raise ValueError("compare needs at least two runs")
    labels, loaded, keys = _load_labelled(runs, labels)
    per_item = {label: _per_item(records, keys, mode, label) for label, records in loaded.items()}
    summary = [{"label": label, "path": str(run), "acc": float(100.0 * per_item[label][0].mean()),
                "kl": _mean_or_none(per_item[label][1])} for label, run in zip(labels, runs)]
    ref = labels[0]
    comparisons = [_compare_pair(ref, label, per_item[ref], per_item[label], num_resamples, seed)
                   for label in labels[1:]]
    return {"mode": mode, "n": len(keys), "num_resamples": num_resamples, "seed": seed, "runs": summary,
            "comparisons": comparisons}


def compare_sides(a: tuple[str | Path, str], b: tuple[str | Path, str], labels: Sequence[str] | None = None,
                  num_resamples: int = 10_000, seed: int = 0) -> dict:
    """One paired comparison of two (run, mode) sides on the same items, where the modes may differ (e.g. the
    ASR cascade of one run against the speech mode of another): `compare_runs`'s comparison row (KL of each side
    in its own mode) plus "mode_a", "mode_b", "num_resamples" and "seed"."""
    (run_a, mode_a), (run_b, mode_b) = a, b
    labels = labels or [f"{Path(run_a).name}:{mode_a}", f"{Path(run_b).name}:{mode_b}"]
    labels, loaded, keys = _load_labelled([run_a, run_b], labels)
    per_a = _per_item(loaded[labels[0]], keys, mode_a, labels[0])
    per_b = _per_item(loaded[labels[1]], keys, mode_b, labels[1])
    return {**_compare_pair(labels[0], labels[1], per_a, per_b, num_resamples, seed), "mode_a": mode_a,
            "mode_b": mode_b, "num_resamples": num_resamples, "seed": seed}


def compare_draws(pairs: Sequence[tuple[str | Path, str | Path]], mode: str = "speech", num_resamples: int = 10_000,
                  seed: int = 0) -> dict:
    """B against A over several draws (e.g. Stage II seeds), each draw a pair (run A, run B) scored on the same items.

    Each item's correctness and choice KL are averaged over the draws, and B − A is bootstrapped over items, so the
    interval covers item sampling with the draws' noise averaged in. Returns {"mode", "draws", "n", "acc_a",
    "acc_b", "acc_diff", "acc_diff_ci", "kl_a", "kl_b", "kl_diff", "kl_diff_ci", "per_draw": [compare rows]}."""
    if not pairs:
        raise ValueError("compare_draws needs at least one (run A, run B) pair")
    per_draw, sides = [], []
    keys = None
    for index, (run_a, run_b) in enumerate(pairs):
        labels, loaded, draw_keys = _load_labelled([run_a, run_b], [f"A{index}", f"B{index}"])
        if keys is not None and draw_keys != keys:
            raise ValueError(f"draw {index} ({run_a}, {run_b}) scored other items than draw 0")
        keys = draw_keys
        a, b = (_per_item(loaded[label], keys, mode, label) for label in labels)
        per_draw.append(_compare_pair(str(run_a), str(run_b), a, b, num_resamples, seed))
        sides.append((a, b))
    mean = lambda side, part: np.mean([s[side][part].astype(float) for s in sides], axis=0)
    pooled = _compare_means((mean(0, 0), mean(0, 1)), (mean(1, 0), mean(1, 1)), num_resamples, seed)
    return {"mode": mode, "draws": len(pairs), "n": len(keys), **pooled, "per_draw": per_draw}


def _compare_means(a, b, num_resamples, seed) -> dict:
    (acc_a, kl_a), (acc_b, kl_b) = a, b
    diff, low, high = paired_bootstrap_diff(100.0 * acc_a, 100.0 * acc_b, num_resamples, seed=seed)
    return {"acc_a": float(100.0 * acc_a.mean()), "acc_b": float(100.0 * acc_b.mean()), "acc_diff": diff,
            "acc_diff_ci": [low, high], **_kl_fields(kl_a, kl_b, num_resamples, seed)}


def _kl_fields(kl_a: np.ndarray, kl_b: np.ndarray, num_resamples: int, seed: int) -> dict:
    """The KL fields of a comparison row: each side's mean and B − A with its interval (None without base text)."""
    if np.isnan(kl_a).any() or np.isnan(kl_b).any():
        return {"kl_a": None, "kl_b": None, "kl_diff": None, "kl_diff_ci": None}
    diff, low, high = paired_bootstrap_diff(kl_a, kl_b, num_resamples, seed=seed)
    return {"kl_a": float(kl_a.mean()), "kl_b": float(kl_b.mean()), "kl_diff": diff, "kl_diff_ci": [low, high]}


def draws_markdown(result: dict) -> str:
    """Markdown of `compare_draws` output: one row per draw, then the items averaged over the draws."""
    def line(label, row, counts):
        kl = "–" if row["kl_diff"] is None else f"{row['kl_diff']:+.4f} [{row['kl_diff_ci'][0]:+.4f}, " \
                                                f"{row['kl_diff_ci'][1]:+.4f}]"
        low, high = row["acc_diff_ci"]
        return (f"| {label} | {row['acc_a']:.1f} | {row['acc_b']:.1f} | {row['acc_diff']:+.1f} [{low:+.1f}, "
                f"{high:+.1f}] | {counts} | {kl} |")
    lines = [f"{result['mode']}, n = {result['n']} items, {result['draws']} draws", "",
             "| draw | A | B | B − A [95 % CI] | gained / lost | KL B − A [95 % CI] |", "|---|---|---|---|---|---|"]
    paths = [Path(d[side]).resolve() for d in result["per_draw"] for side in ("a", "b")]
    common = Path(os.path.commonpath(paths))
    short = lambda path: path.name if path == common else path.relative_to(common).as_posix()
    lines += [line(f"{i}: {short(Path(d['a']).resolve())} → {short(Path(d['b']).resolve())}", d,
                   f"{d['gained']} / {d['lost']}") for i, d in enumerate(result["per_draw"])]
    lines.append(line("**mean over draws**", result, "–"))
    return "\n".join(lines)


def choice_kl_by_benchmark(run: str | Path, mode: str = "speech") -> dict[str, float | None]:
    """{benchmark: mean choice KL(base text ‖ mode) over its items} of one run (None without base_text scores)."""
    records = load_predictions(run)
    out = {}
    for benchmark in sorted({b for b, _ in records}):
        keys = sorted(k for k in records if k[0] == benchmark)
        out[benchmark] = _mean_or_none(_per_item(records, keys, mode, str(run))[1])
    return out


def _load_labelled(runs: Sequence[str | Path], labels: Sequence[str] | None):
    labels = list(labels) if labels else [Path(r).name for r in runs]
    if len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise ValueError(f"need one distinct label per run, got {labels} for {len(runs)} runs")
    loaded = {label: load_predictions(run) for label, run in zip(labels, runs)}
    return labels, loaded, check_same_items(loaded)


def _mean_or_none(values: np.ndarray) -> float | None:
    return None if np.isnan(values).any() else float(values.mean())


def _compare_pair(a_label, b_label, a, b, num_resamples, seed) -> dict:
    return {"a": a_label, "b": b_label, **paired_accuracy(a[0], b[0], num_resamples, seed),
            **_kl_fields(a[1], b[1], num_resamples, seed)}


def comparison_markdown(result: dict) -> str:
    """Markdown table of `compare_runs` output."""
    caption = (f"Paired comparison on the same {result['n']} items, mode `{result['mode']}`; intervals: paired "
               f"bootstrap, {result['num_resamples']} resamples, 95 %; KL = mean KL(base text ‖ {result['mode']}) "
               "of the choice distributions (nats).")
    return "\n".join([caption, "", *comparison_table(result["comparisons"])]) + "\n"


def comparison_table(comparisons: Sequence[dict]) -> list[str]:
    """The markdown table lines (header included) of comparison rows (`compare_runs` / `compare_sides`)."""
    fmt = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"
    lines = ["| A → B | acc A | acc B | B − A [95 % CI] | gained / lost | McNemar p | KL A | KL B | "
             "KL B − A [95 % CI] |", "|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        kl_ci = "" if c["kl_diff_ci"] is None else f" [{c['kl_diff_ci'][0]:+.3f}, {c['kl_diff_ci'][1]:+.3f}]"
        lines.append(f"| {c['a']} → {c['b']} | {c['acc_a']:.1f} | {c['acc_b']:.1f} | {c['acc_diff']:+.1f} "
                     f"[{c['acc_diff_ci'][0]:+.1f}, {c['acc_diff_ci'][1]:+.1f}] | {c['gained']} / {c['lost']} | "
                     f"{c['mcnemar_p']:.3g} | {fmt(c['kl_a'])} | {fmt(c['kl_b'])} | "
                     f"{'–' if c['kl_diff'] is None else format(c['kl_diff'], '+.3f')}{kl_ci} |")
    return lines


# ------------------------------------------------------------------------------------------------ robustness
def cascade_correct_bucket(record: dict) -> str:
    """Bucket of an item by the ASR cascade's answer: "cascade right" / "cascade wrong"."""
    if "cascade" not in record:
        raise ValueError(f"item {record.get('id')!r} has no cascade scores (evaluate with --modes ...,cascade)")
    return "cascade right" if record["cascade"]["correct"] else "cascade wrong"


def gap_by_cascade_bucket(run: str | Path | Mapping[tuple, dict],
                          bucket: Callable[[dict], str] = cascade_correct_bucket, mode: str = "speech",
                          num_resamples: int = 10_000, seed: int = 0) -> dict:
    """{bucket: {"n", "base_text_acc", "<mode>_acc", "gap", "gap_ci", "kl"}}: the text-mode gap
    (base text − mode, points, paired-bootstrap interval) and mean choice KL per bucket of items.

    `bucket(record)` names an item's bucket; the default splits by whether the ASR cascade answers correctly, so
    a model that only inherits the cascade's errors shows its gap in the "cascade wrong" bucket."""
    records = run if isinstance(run, Mapping) else load_predictions(run)
    groups: dict[str, list[dict]] = {}
    for key in sorted(records):
        groups.setdefault(bucket(records[key]), []).append(records[key])
    out = {}
    for name, members in sorted(groups.items()):
        text = [bool(_mode_field(r, REFERENCE_MODE, str(run))["correct"]) for r in members]
        spoken = [bool(_mode_field(r, mode, str(run))["correct"]) for r in members]
        kls = [choice_kl(r[REFERENCE_MODE]["logprobs"], r[mode]["logprobs"]) for r in members]
        gap = 100.0 * (np.mean(text) - np.mean(spoken))
        out[name] = {"n": len(members), "base_text_acc": float(100.0 * np.mean(text)),
                     f"{mode}_acc": float(100.0 * np.mean(spoken)), "gap": float(gap),
                     "gap_ci": list(paired_bootstrap_gap_ci(text, spoken, num_resamples, seed=seed)),
                     "kl": float(np.mean(kls))}
    return out


def transcript_wer(reference: str, record: dict) -> float:
    """WER of the cascade's transcript of an item against the text that was spoken (Whisper's English
    normalizer on both sides, as the project's CER check)."""
    import jiwer

    from datasets_scripts.asr_check import normalize_text

    hypothesis = normalize_text(_mode_field(record, "cascade", "?").get("transcript") or "")
    reference = normalize_text(reference)
    if not reference:
        raise ValueError(f"item {record.get('id')!r}: empty reference text")
    return float(jiwer.wer(reference, hypothesis)) if hypothesis else 1.0


def wer_bucket(edges: Sequence[float], wer_of: Callable[[dict], float]) -> Callable[[dict], str]:
    """A `bucket` for `gap_by_cascade_bucket` by transcript WER bands: edges (0, 0.25) give "WER <= 0",
    "WER (0, 0.25]" and "WER > 0.25". `wer_of(record)` is an item's WER (e.g. `transcript_wer`)."""
    edges = sorted(edges)
    if not edges:
        raise ValueError("wer_bucket needs at least one edge")

    def bucket(record: dict) -> str:
        wer = wer_of(record)
        if wer <= edges[0]:
            return f"WER <= {edges[0]:g}"
        for low, high in zip(edges, edges[1:]):
            if wer <= high:
                return f"WER ({low:g}, {high:g}]"
        return f"WER > {edges[-1]:g}"

    return bucket
