"""Which parts should train in the demo? Stage I with the adapter only, adapter + LoRA, or adapter + full LLM (with a
frozen-copy teacher, as in the paper), each from the same `salad-init`, on the same data and cached features, for the
same steps; every run is evaluated on the demo's held-out spoken sets (seen and unseen voice) and on text.

Runs once, on a demo folder whose data stages are done (`salad-demo --preset default --stages
assets,salad_init,first_look,eval_sets,stage1_data,features,eval_init`), and writes its table into
benchmarks/RESULTS.md ("## Demo ablation: what trains"):

    python benchmarks/demo_ablation.py --run runs/demo [--settings adapter adapter+lora adapter+llm] [--steps N]

`make demo` then runs only the chosen setting (salad_demo/presets.py); its report says why.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Demo ablation: what trains"
# LLM learning rate per setting (the adapter keeps the preset's): the paper's LLM/adapter ratio is 1:20.
LLM_LEARNING_RATES = {"adapter": None, "adapter+lora": 1e-4, "adapter+llm": 5e-5}


def write_section(body: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text)


def run(args) -> list[dict]:
    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset

    stored = json.loads((Path(args.run) / "preset.json").read_text())
    pipeline = DemoPipeline(get_preset(stored["name"]), args.run)
    for stage in ("stage1_data", "features", "eval_init"):
        pipeline.result(stage)  # a clear error when the demo's data stages have not run
    steps = args.steps or pipeline.preset.stage1_steps
    rows = []
    for setting in args.settings:
        name = f"ablation-{setting.replace('+', '-')}"
        start = time.perf_counter()
        trained = pipeline._train(name, pipeline.out / "salad-init", [pipeline.result("stage1_data")["dataset"]],
                                  pipeline.preset.decay_fraction, steps, trainable=setting,
                                  llm_learning_rate=LLM_LEARNING_RATES[setting])
        train_seconds = time.perf_counter() - start
        evaluated = pipeline._evaluate(trained["output_dir"])
        rows.append({"setting": setting, "steps": steps, "train_seconds": train_seconds,
                     "first_kd_loss": trained["first_kd_loss"], "last_kd_loss": trained["last_kd_loss"],
                     **{f"{role}_{key}": evaluated[role]["average"].get(key)
                        for role in ("seen", "unseen") for key in ("base_text_acc", "text_acc", "speech_acc", "gap")}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo", help="demo folder with its data stages done")
    parser.add_argument("--settings", nargs="+", default=list(LLM_LEARNING_RATES), choices=list(LLM_LEARNING_RATES))
    parser.add_argument("--steps", type=int, default=None, help="Stage I steps (default: the preset's)")
    args = parser.parse_args()
    rows = run(args)
    init = json.loads((Path(args.run) / "stages" / "eval_init.json").read_text())["result"]
    lines = ["| setting | steps | train s | kd_loss first → last | text acc (base) | speech seen | speech unseen | "
             "gap seen | gap unseen |", "|---|---|---|---|---|---|---|---|---|",
             f"| salad-init (untrained) | 0 | 0 | – | {init['seen']['average']['text_acc']:.1f} "
             f"({init['seen']['average']['base_text_acc']:.1f}) | {init['seen']['average']['speech_acc']:.1f} | "
             f"{init['unseen']['average']['speech_acc']:.1f} | {init['seen']['average']['gap']:.1f} | "
             f"{init['unseen']['average']['gap']:.1f} |"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['steps']} | {r['train_seconds']:.0f} | {r['first_kd_loss']:.3f} → "
                     f"{r['last_kd_loss']:.3f} | {r['seen_text_acc']:.1f} ({r['seen_base_text_acc']:.1f}) | "
                     f"{r['seen_speech_acc']:.1f} | {r['unseen_speech_acc']:.1f} | {r['seen_gap']:.1f} | "
                     f"{r['unseen_gap']:.1f} |")
    command = "python benchmarks/demo_ablation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_section(f"Command: `{command}` (CPU, 2 cores)\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
