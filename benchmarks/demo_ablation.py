"""Which parts should train in the demo? Stage I with the adapter only, adapter + LoRA, or adapter + full LLM (with a
frozen-copy teacher, as in the paper), each from the same `salad-init`, on the same data and cached features, for the
same steps; every run is evaluated on the demo's held-out spoken sets (seen and unseen voice) and on text.

Runs once, on a demo folder whose data stages are done (`salad-demo --preset default --stages
assets,salad_init,first_look,eval_sets,stage1_data,features,eval_init`), and writes its table into
benchmarks/RESULTS.md ("## Demo ablation: what trains"):

    python benchmarks/demo_ablation.py --run runs/demo [--settings adapter adapter+lora adapter+llm llm] [--steps N]
        [--adapter-learning-rate LR] [--table-only]

`make demo` then runs only the chosen setting (salad_demo/presets.py); its report says why.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Demo ablation: what trains"
# LLM learning rate per setting (the adapter keeps the preset's): the paper's LLM/adapter ratio is 1:20.
LLM_LEARNING_RATES = {"adapter": None, "adapter+lora": 1e-4, "adapter+llm": 5e-5, "llm": 5e-5}



def write_section(body: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text)


ROW_KEYS = ("base_text_acc", "text_acc", "speech_acc", "gap", "agreement", "choice_tv")


def rows_dir(run_dir) -> Path:
    return Path(run_dir) / "ablation"


def run(args) -> list[dict]:
    """Train and evaluate each requested setting; each row is kept as OUT/ablation/<name>.json, so the table
    accumulates settings measured by separate invocations."""
    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset
    from spans import atomic_write_text

    stored = json.loads((Path(args.run) / "preset.json").read_text())
    pipeline = DemoPipeline(get_preset(stored["name"]), args.run)
    for stage in ("stage1_data", "features", "eval_init"):
        pipeline.result(stage)  # a clear error when the demo's data stages have not run
    steps = args.steps or pipeline.preset.stage1_steps
    if not (rows_dir(args.run) / "salad-init.json").is_file():
        atomic_write_text(rows_dir(args.run) / "salad-init.json", json.dumps(init_row(pipeline), indent=1))
    rows = []
    for setting in args.settings:
        adapter_lr = args.adapter_learning_rate or pipeline.preset.learning_rate
        name = f"ablation-{setting.replace('+', '-')}-lr{adapter_lr:g}-{steps}"
        trained = pipeline._train(name, pipeline.out / "salad-init", [pipeline.result("stage1_data")["dataset"]],
                                  pipeline.preset.decay_fraction, steps, trainable=setting,
                                  llm_learning_rate=LLM_LEARNING_RATES[setting], adapter_learning_rate=adapter_lr)
        history = json.loads(Path(trained["log_history"]).read_text())
        train_seconds = next((h["train_runtime"] for h in reversed(history) if "train_runtime" in h), None)
        evaluated = pipeline._evaluate(trained["output_dir"])
        row = {"setting": setting, "steps": steps, "adapter_learning_rate": adapter_lr,
               "llm_learning_rate": LLM_LEARNING_RATES[setting], "train_seconds": train_seconds,
               "first_kd_loss": trained["first_kd_loss"], "last_kd_loss": trained["last_kd_loss"],
               "command": "python benchmarks/demo_ablation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
               **{f"{role}_{key}": evaluated[role]["average"].get(key)
                  for role in ("seen", "unseen") for key in ROW_KEYS}}
        atomic_write_text(rows_dir(args.run) / f"{name}.json", json.dumps(row, indent=1))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def init_row(pipeline) -> dict:
    """The untrained starting point of every setting, as a row."""
    init = pipeline.result("eval_init")
    return {"setting": "none (salad-init)", "steps": 0, "adapter_learning_rate": None, "llm_learning_rate": None,
            "train_seconds": 0.0, "first_kd_loss": None, "last_kd_loss": None, "command": "salad-demo (eval_init)",
            **{f"{role}_{key}": init[role]["average"].get(key) for role in ("seen", "unseen") for key in ROW_KEYS}}


def render_table(run_dir) -> str:
    """Markdown table of every stored row (salad-init first, then by setting and steps)."""
    rows = [json.loads(p.read_text()) for p in sorted(rows_dir(run_dir).glob("*.json"))]
    rows.sort(key=lambda r: (r["steps"] > 0, r["setting"], r["steps"], r["adapter_learning_rate"] or 0))
    lines = ["| setting | steps | adapter LR | LLM LR | train s | kd_loss first → last | text acc (base) | "
             "speech seen / unseen | gap seen / unseen | speech = text answer % seen / unseen | "
             "choice TV seen / unseen |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lr = lambda value: "–" if value is None else format(value, "g")
    for r in rows:
        value = lambda role, key, r=r: r.get(f"{role}_{key}")
        both = lambda key, digits=1: f"{_fmt(value('seen', key), digits)} / {_fmt(value('unseen', key), digits)}"
        adapter_lr = "frozen" if r["setting"] == "llm" else lr(r["adapter_learning_rate"])
        lines.append(f"| {r['setting']} | {r['steps']} | {adapter_lr} | "
                     f"{lr(r['llm_learning_rate'])} | {_fmt(r['train_seconds'], 0)} | "
                     f"{_fmt(r['first_kd_loss'], 3)} → {_fmt(r['last_kd_loss'], 3)} | "
                     f"{_fmt(value('seen', 'text_acc'))} ({_fmt(value('seen', 'base_text_acc'))}) | "
                     f"{both('speech_acc')} | {both('gap')} | {both('agreement')} | {both('choice_tv', 3)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo", help="demo folder with its data stages done")
    parser.add_argument("--settings", nargs="+", default=list(LLM_LEARNING_RATES), choices=list(LLM_LEARNING_RATES))
    parser.add_argument("--steps", type=int, default=None, help="Stage I steps (default: the preset's)")
    parser.add_argument("--adapter-learning-rate", type=float, default=None,
                        help="adapter learning rate (default: the preset's)")
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table from stored rows")
    args = parser.parse_args()
    if not args.table_only:
        run(args)
    write_section("Each row: `python benchmarks/demo_ablation.py --run runs/demo --settings SETTING --steps N "
                  "[--adapter-learning-rate LR]` (CPU, 2 cores), from the same salad-init, data, cached features "
                  "and held-out spoken sets as the demo; rows are kept in `runs/demo/ablation/*.json`. "
                  "`train s` is the trainer's own runtime (model loading and evaluation excluded). The last two "
                  "column pairs compare each spoken answer with the base LLM's text answer to the same question "
                  "(share of identical answers; mean total-variation distance of the choice distributions, "
                  "`evaluation.metrics.speech_text_agreement`). Reading and the demo's choice: the next section."
                  "\n\n" + render_table(args.run))


if __name__ == "__main__":
    main()
