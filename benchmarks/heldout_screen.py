"""Screen packaged multiple-choice tasks (`datasets_scripts.packaged_tasks` specs) for the demo's held-out sets:
where is the 135M base LLM (SmolLM2-135M-Instruct, text mode, few-shot, log-likelihood scoring as in the demo)
clearly above chance?

    python benchmarks/heldout_screen.py [--tasks TASK ...] [--items 108] [--out runs/heldout-screen]

Items are drawn exactly as the demo draws its eval sets (`salad_demo.demo_data.eval_items`: short questions only,
seeded order; the first `--pool` items are the few-shot pool, the rest are scored), so a kept task can go into
`DemoPreset.eval_tasks` unchanged. Verdict "keep" = the lower end of the 95 % bootstrap interval of the base
text accuracy is above chance + `--margin` points. One JSON row per task is appended (atomically) to
OUT/screen.jsonl, so an interrupted screen resumes at the next task; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# the packaged MC sets with >= 100 short (<= 40 words) speakable English questions
CANDIDATES = ("arithmetic:1_digit_multiplication", "arithmetic:1_digit_addition", "arithmetic:1_digit_subtraction",
              "arithmetic:2_digit_addition", "evals:quartz", "evals:socialiqa", "evals:mmlu", "evals:which_is_heavier",
              "evals:born_first", "evals:food")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def screen_task(task, base, tokenizer, args) -> dict:
    from evaluation.api import Benchmark, EvalConfig, evaluate_model
    from datasets_scripts.packaged_tasks import task_file_stem
    from salad_demo.demo_data import eval_items

    items = eval_items(task, args.items + args.pool, args.max_question_words, seed=args.seed)
    if len(items) < args.pool + 3:
        return {"task": task, "n": 0, "verdict": f"only {len(items)} short items"}
    start = time.perf_counter()
    bench = Benchmark(task_file_stem(task), items[args.pool:], fewshot_pool=items[: args.pool])
    config = EvalConfig(modes=["text"], num_fewshot=args.num_fewshot, max_length=args.max_length,
                        num_resamples=args.bootstrap, seed=args.seed, progress=False)
    result = evaluate_model(None, None, base, tokenizer, [bench], config)
    row = result["benchmarks"][bench.name]
    low, high = row["base_text_acc_ci"]
    keep = low > row["chance_acc"] + args.margin
    return {"task": task, "n": row["n"], "base_text_acc": row["base_text_acc"], "ci": [low, high],
            "chance_acc": row["chance_acc"], "verdict": "keep" if keep else "drop",
            "seconds": time.perf_counter() - start, "num_fewshot": args.num_fewshot, "max_length": args.max_length}


def table(rows: list[dict]) -> str:
    lines = ["| task | n | base text acc | 95 % CI | chance | above chance (pts) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["n"]:
            lines.append(f"| {r['task']} | 0 | – | – | – | – | {r['verdict']} |")
            continue
        lines.append(f"| {r['task']} | {r['n']} | {r['base_text_acc']:.1f} | [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] | "
                     f"{r['chance_acc']:.1f} | {r['base_text_acc'] - r['chance_acc']:+.1f} | {r['verdict']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(CANDIDATES),
                        help="task specs (evals:NAME, arithmetic:N_digit_OP, bigbench:TASK)")
    parser.add_argument("--items", type=int, default=80, help="scored items per task (after the few-shot pool)")
    parser.add_argument("--pool", type=int, default=8, help="few-shot pool per task (the demo's)")
    parser.add_argument("--num-fewshot", type=int, default=2, help="shots per prompt (the demo's)")
    parser.add_argument("--max-length", type=int, default=384, help="prompt token budget (the demo's)")
    parser.add_argument("--max-question-words", type=int, default=40, help="longer questions are skipped")
    parser.add_argument("--margin", type=float, default=0.0, help="points above chance the CI must clear")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/heldout-screen", help="folder of screen.jsonl")
    args = parser.parse_args(argv)
    if args.items < 1 or args.pool < args.num_fewshot:
        parser.error("--items must be >= 1 and --pool >= --num-fewshot")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from salad_demo.assets import prepare_assets
    from spans.files import atomic_write_text

    torch.set_num_threads(args.threads)
    path = Path(args.out) / "screen.jsonl"
    llm = prepare_assets()["llm"]
    base, tokenizer = AutoModelForCausalLM.from_pretrained(llm).eval(), AutoTokenizer.from_pretrained(llm)
    for task in args.tasks:
        rows = read_rows(path)
        if any(r["task"] == task for r in rows):
            continue
        row = screen_task(task, base, tokenizer, args)
        print(json.dumps(row), flush=True)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows + [row]))
    wanted = set(args.tasks)
    print(table([r for r in read_rows(path) if r["task"] in wanted]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
