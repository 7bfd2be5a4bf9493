"""`salad-eval`: spoken multiple-choice evaluation of a SALAD checkpoint against its base text LLM.

    salad-eval --model CKPT [--base-model LLM] --benchmark evals:socialiqa items.jsonl spoken_dir/ \
        --modes text,speech,cascade --tts piper --asr-model WHISPER_DIR --num-fewshot 5 --output DIR
    salad-eval plot run1/results.json run2/results.json ... --output DIR [--labels a b ...]
    salad-eval compare RUN_A RUN_B ... [--labels a b ...] [--mode speech] [--output DIR]
    salad-eval compare --draws A1 B1 A2 B2 ... [--mode speech] [--output DIR]

Writes DIR/results.json (accuracies in percent, unrounded; gap == base_text_acc - speech_acc), DIR/results.md
(rounded, paper Table 3 layout), DIR/predictions/<benchmark>.jsonl and DIR/accuracy_by_task.png; other files in
DIR are left alone. Fully offline on local folders.

results.json records the settings that made it (`settings`, `settings_sha256`). A results.json already in DIR
from different settings is renamed to results.stale.json (results.md to results.stale.md) before scoring starts,
so DIR never shows a results file that the last run's settings did not produce, even when that run fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from spans import atomic_write_text

from .api import MODES, EvalCache, EvalConfig, evaluate_model, parse_modes
from .audio import SpokenQuestions
from .scorer import NORMALIZATIONS

logger = logging.getLogger("salad-eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SALAD checkpoint folder (or a plain causal LM: text only).")
    parser.add_argument("--base-model", help="Base text LLM folder; default: the checkpoint's config.base_text_model.")
    parser.add_argument("--benchmark", nargs="+", required=True,
                        help="JSONL, BIG-bench task.json, spoken benchmark folder, paper set name, or a packaged task: "
                             "evals:NAME, arithmetic:N_digit_OP, bigbench:TASK.")
    parser.add_argument("--split", help="Split of the benchmark source to score (default: the source's default).")
    parser.add_argument("--modes", default="text,speech", help=f"Comma-separated subset of {','.join(MODES)}.")
    parser.add_argument("--tts", default="piper", help="TTS voice pool BACKEND[:VOICE][,...] for items without audio.")
    parser.add_argument("--tts-cache", help="Folder caching synthesized clips (default $SALAD_CACHE/eval-tts, else .cache/eval-tts).")
    parser.add_argument("--asr-model", help="Whisper folder for the cascade mode (required by it; `salad-assets` "
                        "prints the path of a converted tiny.en).")
    parser.add_argument("--num-fewshot", type=int, default=5, help="Up to this many shots (as many as fit).")
    parser.add_argument("--fewshot-file", help="MC items to draw shots from (default: train split or held-out part).")
    parser.add_argument("--fewshot-pool-size", type=int, default=None,
                        help="Items held out (seeded) as the shot pool when the source has no train split "
                             "(default: min(25, max(num_fewshot, n/7))).")
    parser.add_argument("--fewshot-seed", type=int, default=1234)
    parser.add_argument("--max-length", type=int, default=2048, help="Context budget in tokens (paper: 2048).")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="chars",
                        help="Length normalization of choice log-likelihoods (chars = lm-eval acc_norm).")
    parser.add_argument("--limit", type=int, help="Score at most N items per benchmark.")
    parser.add_argument("--no-share-prefix", action="store_true", help="Recompute the prompt per choice (slow).")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="Prompts scored together in one forward pass (lm-eval's --batch_size; 1 = one by one).")
    parser.add_argument("--score-cache", metavar="FILE",
                        help="sqlite file keeping text-prompt log-likelihoods and cascade transcripts between runs "
                             "(lm-eval's --use_cache); entries are keyed by the model's weights and the exact "
                             "tokens, so a changed model or prompt never reads a stale score.")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the 95%% intervals.")
    parser.add_argument("--seed", type=int, default=0, help="Bootstrap seed.")
    parser.add_argument("--generate-show-choices", action="store_true", help="generate mode: list the options.")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on an oversubscribed machine).")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu).")
    parser.add_argument("--output", required=True, help="Output folder (may exist; only our files are written).")
    parser.add_argument("--label", help="Label of this run in plots (default: the model folder name).")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="Allow the model folders' own Python code to run. Without it only code byte-identical "
                             "to the installed modeling_salad runs; any other code is refused.")
    return parser


def build_plot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-eval plot", description="Gap across checkpoints / stages.")
    parser.add_argument("results", nargs="+", help="results.json files, in checkpoint order.")
    parser.add_argument("--labels", nargs="+", help="One label per results file.")
    parser.add_argument("--output", required=True, help="Folder for gap_over_checkpoints.png.")
    return parser


def build_compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-eval compare",
                                     description="Paired comparison of runs on the same items (evaluation.compare).")
    parser.add_argument("runs", nargs="+", help="salad-eval output folders; every run is compared with the first.")
    parser.add_argument("--labels", nargs="+", help="One label per run (default: the folder names).")
    parser.add_argument("--mode", default="speech", help="Mode compared (speech, cascade, text; default speech).")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="Paired-bootstrap resamples.")
    parser.add_argument("--seed", type=int, default=0, help="Bootstrap seed.")
    parser.add_argument("--draws", action="store_true",
                        help="Runs are pairs A1 B1 A2 B2 ... of several draws (e.g. Stage II seeds): B against A "
                             "per draw and with each item averaged over the draws.")
    parser.add_argument("--output", help="Folder for compare.json and compare.md (default: print only).")
    return parser


def run_compare(argv) -> int:
    from .compare import compare_draws, compare_runs, comparison_markdown, draws_markdown

    args = build_compare_parser().parse_args(argv)
    try:
        if args.draws:
            if len(args.runs) % 2:
                raise ValueError(f"--draws takes pairs A1 B1 A2 B2 ..., got {len(args.runs)} runs")
            pairs = list(zip(args.runs[::2], args.runs[1::2]))
            result = compare_draws(pairs, args.mode, args.bootstrap, args.seed)
        else:
            result = compare_runs(args.runs, args.labels, args.mode, args.bootstrap, args.seed)
    except ValueError as error:
        raise SystemExit(f"salad-eval compare: {error}") from None
    markdown = draws_markdown(result) if args.draws else comparison_markdown(result)
    if args.output:
        from spans import atomic_write_json

        atomic_write_json(Path(args.output) / "compare.json", result, indent=2)
        atomic_write_text(Path(args.output) / "compare.md", markdown)
    print(markdown)
    return 0


def _is_salad_folder(path: str) -> bool:
    from .loading import is_salad_checkpoint

    if not (Path(path) / "config.json").is_file():
        raise ValueError(f"--model {path!r} is not a model folder with a config.json.")
    return is_salad_checkpoint(path)


def load_models(model_path: str, base_model: str | None, device: str, trust_remote_code: bool = False):
    """(salad model | None, processor | None, base model | None, base tokenizer | None)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = processor = None
    if _is_salad_folder(model_path):
        from .loading import load_salad

        model, processor = load_salad(model_path, device, trust_remote_code=trust_remote_code)
        base_model = base_model or model.config.base_text_model
        if not base_model:
            raise ValueError("The checkpoint's config has no base_text_model; pass --base-model PATH.")
    else:
        base_model = base_model or model_path
    try:
        base = AutoModelForCausalLM.from_pretrained(base_model, trust_remote_code=trust_remote_code).to(device).eval()
        base_tokenizer = AutoTokenizer.from_pretrained(base_model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Base text model {base_model!r} (from {'--base-model' if base_model else 'config.base_text_model'}) "
            f"could not be loaded offline: {error}. Pass --base-model with a local folder."
        ) from None
    return model, processor, base, base_tokenizer


def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def results_markdown(results: dict) -> str:
    """Table-3-like summary: per task base text / SALAD text / speech / gap / cascade, rounded to 0.1."""
    columns = [("base_text_acc", "base text"), ("text_acc", "SALAD text"), ("speech_acc", "SALAD speech"),
               ("gap", "gap"), ("cascade_acc", "cascade"), ("generate_acc", "generate"), ("chance_acc", "chance")]
    rows = {**results["benchmarks"], "**average**": results["average"]}
    present = [(k, t) for k, t in columns if any(k in row for row in rows.values())]
    lines = [f"# Spoken multiple-choice evaluation: `{results.get('model', '?')}`", "",
             f"Base LLM: `{results.get('base_model', '?')}`. Accuracy in %, 95 % bootstrap intervals in brackets; "
             "gap = base text − SALAD speech (points).", "",
             "| benchmark | n | " + " | ".join(t for _, t in present) + " |",
             "|---|---|" + "---|" * len(present)]
    for name, row in rows.items():
        cells = []
        for key, _ in present:
            cell = _fmt(row.get(key))
            if f"{key}_ci" in row and key != "chance_acc":
                low, high = row[f"{key}_ci"]
                cell += f" [{low:.1f}, {high:.1f}]"
            cells.append(cell)
        lines.append(f"| {name} | {row.get('n', '')} | " + " | ".join(cells) + " |")
    config = results.get("config", {})
    lines += ["", f"Settings: modes {','.join(config.get('modes', []))}; up to {config.get('num_fewshot')} shots within "
              f"{config.get('max_length')} tokens; normalization {config.get('normalization')}; "
              f"TTS {results.get('tts', '-')}; ASR {results.get('asr_model', '-')}.", ""]
    return "\n".join(lines)


# arguments that do not change the numbers
_NOT_SETTINGS = ("output", "label", "threads", "trust_remote_code")


def run_settings(args) -> dict:
    return {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_SETTINGS}


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def retire_stale_results(output: Path, settings: dict) -> bool:
    """Rename a results.json (and results.md) of `output` made by other settings to results.stale.*."""
    current = output / "results.json"
    if not current.is_file():
        return False
    try:
        old = json.loads(current.read_text(encoding="utf-8")).get("settings_sha256")
    except (json.JSONDecodeError, AttributeError):
        old = None
    if old == settings_digest(settings):
        return False
    for name in ("results.json", "results.md"):
        if (output / name).is_file():
            os.replace(output / name, output / name.replace("results.", "results.stale."))
    logger.warning("%s came from other settings; renamed to results.stale.json", current)
    return True


def write_results(output: Path, results: dict) -> None:
    predictions = results.pop("predictions", {})
    for name, records in predictions.items():
        atomic_write_text(output / "predictions" / f"{name}.jsonl",
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    atomic_write_text(output / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(output / "results.md", results_markdown(results))
    from .plots import plot_accuracy_by_task

    plot_accuracy_by_task(results, output / "accuracy_by_task.png")


def eval_config(args, modes: list[str]) -> EvalConfig:
    """The flags -> an `EvalConfig`."""
    return EvalConfig(modes=modes, num_fewshot=args.num_fewshot, fewshot_pool_size=args.fewshot_pool_size,
                      fewshot_seed=args.fewshot_seed, max_length=args.max_length, normalization=args.normalization,
                      share_prefix=not args.no_share_prefix, batch_size=args.batch_size, limit=args.limit,
                      generate_show_choices=args.generate_show_choices, num_resamples=args.bootstrap, seed=args.seed)


def run_eval(args) -> dict:
    import torch

    from .benchmark_sources import load_benchmark
    from .cascade import WhisperASR
    from .score_store import ScoreStore

    modes = parse_modes(args.modes)
    store = ScoreStore(args.score_cache) if args.score_cache else None
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}.")
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    benchmarks = [load_benchmark(spec, args.split, args.fewshot_file) for spec in args.benchmark]
    names = [b.name for b in benchmarks]
    if len(set(names)) != len(names):
        raise ValueError(f"Two benchmarks share a name: {names}.")
    model, processor, base, base_tokenizer = load_models(args.model, args.base_model, device, args.trust_remote_code)
    if model is None and {"speech", "generate"} & set(modes):
        raise ValueError(f"--model {args.model!r} is not a SALAD checkpoint; modes speech/generate need one.")
    asr = asr_path = None
    if "cascade" in modes:
        if not args.asr_model:
            raise ValueError("Mode cascade needs --asr-model: a local Whisper model folder (`salad-assets` prints "
                             "the path of a converted tiny.en).")
        asr_path = args.asr_model
        asr = WhisperASR.from_pretrained(asr_path, store=store)
        asr.model.to(device)
    spoken = SpokenQuestions(args.tts, args.tts_cache)
    results = evaluate_model(model, processor, base, base_tokenizer, benchmarks, eval_config(args, modes),
                             spoken=spoken, asr=asr, cache=EvalCache(store=store))
    base_name = args.base_model or (model.config.base_text_model if model is not None else args.model)
    return {"model": args.model, "label": args.label or Path(args.model).name, "base_model": base_name,
            "tts": args.tts if {"speech", "cascade", "generate"} & set(modes) else None, "asr_model": asr_path,
            "benchmarks_spec": args.benchmark, **results}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if argv[:1] == ["compare"]:
        return run_compare(argv[1:])
    if argv[:1] == ["plot"]:
        args = build_plot_parser().parse_args(argv[1:])
        from .plots import plot_gap_over_checkpoints

        path = plot_gap_over_checkpoints(args.results, Path(args.output) / "gap_over_checkpoints.png", args.labels)
        print(path)
        return 0
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise SystemExit("salad-eval: --limit must be >= 1")
    output, settings = Path(args.output), run_settings(args)
    retire_stale_results(output, settings)
    try:
        results = run_eval(args)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"salad-eval: {error}") from None
    results.update(settings=settings, settings_sha256=settings_digest(settings))
    write_results(output, results)
    print(results_markdown(results))
    print(f"Wrote {output / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
