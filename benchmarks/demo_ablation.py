"""Which recipe and what trains in the demo? Stage I runs of each (recipe, setting) from that recipe's untrained
init, on the same data and held-out spoken sets as the demo, each compared paired with the demo's salad-init and
with the ASR cascade on the same items.

Recipes (`salad_demo.presets.RECIPES`): `transcript` (Whisper's greedy tokens through the vocabulary bridge),
`posterior` (the differentiable posterior front end: distillation trains Whisper's decoder), `mlp` (frame adapter
from scratch). Settings (`DistillationConfig.trainable`): `adapter` (the front end only; for the posterior recipe
that is the Whisper decoder, in full or with `--projector-lora-r`), `adapter+llm`, `adapter+lora`, `llm`.

Runs on a demo folder whose data stages are done (`salad-demo --preset default --stages
assets,salad_init,first_look,eval_sets,stage1_data,features,eval_init`) and writes its table into
benchmarks/RESULTS.md ("## Demo ablation: recipe and what trains"):

    python benchmarks/demo_ablation.py --run runs/demo --recipe posterior --settings adapter [--steps N]
        [--adapter-learning-rate LR] [--llm-learning-rate LR] [--projector-lora-r R] [--table-only]

Rows are kept in OUT/ablation/*.json, so the table accumulates runs of separate invocations. `make demo` then runs
the chosen recipe and setting (salad_demo/presets.py); its report says why.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SECTION = "## Demo ablation: recipe and what trains"
# Default LLM learning rate per setting (the paper's LLM/adapter ratio is 1:20 for adapters trained from scratch).
LLM_LEARNING_RATES = {"adapter": None, "adapter+lora": 1e-4, "adapter+llm": 5e-5, "llm": 5e-5}
ROLES = ("seen", "unseen")
ROW_KEYS = ("base_text_acc", "text_acc", "speech_acc", "gap", "agreement", "choice_tv")


def write_section(body: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text)


def rows_dir(run_dir) -> Path:
    return Path(run_dir) / "ablation"


def predictions(pipeline, checkpoint, role: str) -> Path:
    return pipeline.out / "eval" / Path(checkpoint).name / role


def recipe_name(recipe: dict) -> str:
    from salad_demo.presets import RECIPES

    return next((name for name, r in RECIPES.items() if r == recipe), recipe["adapter_type"])


def init_checkpoint(pipeline, recipe: str) -> Path:
    """The recipe's untrained model: the demo's salad-init, or one built (and its features cached) once."""
    from salad_demo.presets import RECIPES

    if recipe == recipe_name(pipeline.preset.recipe):
        return pipeline.out / "salad-init"
    target = pipeline.out / f"ablation-init-{recipe}"
    if not (target / "config.json").is_file():
        pipeline.build_init(RECIPES[recipe], target)
    pipeline.precompute_features(target)
    return target


def paired(pipeline, checkpoint) -> dict:
    """Per voice: the checkpoint's speech vs salad-init's speech and vs the ASR cascade, on the same items."""
    from evaluation.compare import compare_sides

    init = pipeline.out / "salad-init"
    out = {}
    for role in ROLES:
        mine = (predictions(pipeline, checkpoint, role), "speech")
        out[role] = {"vs_init": compare_sides((predictions(pipeline, init, role), "speech"), mine,
                                              labels=["salad-init", "model"]),
                     "vs_cascade": compare_sides((predictions(pipeline, init, role), "cascade"), mine,
                                                 labels=["cascade", "model"])}
    return out


def evaluated_row(pipeline, checkpoint, evaluated: dict, **fields) -> dict:
    row = dict(fields)
    row.update({f"{role}_{key}": evaluated[role]["average"].get(key) for role in ROLES for key in ROW_KEYS})
    row["paired"] = paired(pipeline, checkpoint)
    return row


def train_row(pipeline, args, recipe: str, setting: str, init: Path) -> dict:
    from trainers.config import parse_parameter_learning_rates

    steps = args.steps or pipeline.preset.stage1_steps
    adapter_lr = args.adapter_learning_rate or pipeline.preset.learning_rate
    llm_lr = args.llm_learning_rate or LLM_LEARNING_RATES[setting]
    overrides = {"projector_lora_r": args.projector_lora_r} if args.projector_lora_r else {}
    rates = parse_parameter_learning_rates(args.adapter_parameter_learning_rates)
    if rates:
        overrides["adapter_parameter_learning_rates"] = rates
    tag = "".join(f"-{k.split('.')[-1]}{v:g}" for k, v in sorted((rates or {}).items()))
    name = (f"ablation-{recipe}-{setting.replace('+', '-')}-lr{adapter_lr:g}-llm{llm_lr or 0:g}"
            f"-r{args.projector_lora_r}{tag}-{steps}")
    trained = pipeline._train(name, init, [pipeline.result("stage1_data")["dataset"]],
                              pipeline.preset.decay_fraction, steps, trainable=setting, llm_learning_rate=llm_lr,
                              adapter_learning_rate=adapter_lr, **overrides)
    history = json.loads(Path(trained["log_history"]).read_text())
    train_seconds = next((h["train_runtime"] for h in reversed(history) if "train_runtime" in h), None)
    evaluated = pipeline._evaluate(trained["output_dir"])
    return name, evaluated_row(
        pipeline, trained["output_dir"], evaluated, recipe=recipe, setting=setting, steps=steps,
        adapter_learning_rate=adapter_lr, llm_learning_rate=llm_lr, projector_lora_r=args.projector_lora_r,
        adapter_parameter_learning_rates=rates,
        train_seconds=train_seconds, first_kd_loss=trained["first_kd_loss"], last_kd_loss=trained["last_kd_loss"],
        command="python benchmarks/demo_ablation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


def init_row(pipeline, recipe: str, init: Path) -> dict:
    """The recipe's untrained starting point, as a row (evaluated once)."""
    evaluated = (pipeline.result("eval_init") if init.name == "salad-init" else pipeline._evaluate(init))
    return evaluated_row(pipeline, init, evaluated, recipe=recipe, setting="none (init)", steps=0,
                         adapter_learning_rate=None, llm_learning_rate=None, projector_lora_r=0, train_seconds=0.0,
                         first_kd_loss=None, last_kd_loss=None, command="salad-demo (eval_init)" if
                         init.name == "salad-init" else "python benchmarks/demo_ablation.py (init row)")


def demo_stage1_row(pipeline) -> dict | None:
    """The demo's own Stage I (preset recipe and setting), as a row once its evaluation is done: the same run the
    ablation would repeat."""
    if not pipeline.runner.done("eval_stage1"):
        return None
    p, trained = pipeline.preset, pipeline.result("stage1")
    history = json.loads(Path(trained["log_history"]).read_text())
    train_seconds = next((h["train_runtime"] for h in reversed(history) if "train_runtime" in h), None)
    return evaluated_row(
        pipeline, trained["output_dir"], pipeline.result("eval_stage1"), recipe=recipe_name(p.recipe),
        setting=p.trainable, steps=p.stage1_steps, adapter_learning_rate=p.learning_rate,
        llm_learning_rate=p.llm_learning_rate if "llm" in p.trainable or "lora" in p.trainable else None,
        projector_lora_r=0, train_seconds=train_seconds, first_kd_loss=trained["first_kd_loss"],
        last_kd_loss=trained["last_kd_loss"], command=f"salad-demo --preset {p.name} (stage1, eval_stage1)")


def add_demo_row(run_dir, pipeline) -> None:
    from spans import atomic_write_text

    row = demo_stage1_row(pipeline)
    if row is None:
        return
    atomic_write_text(rows_dir(run_dir) / "demo-stage1.json", json.dumps(row, indent=1))
    recipe = recipe_name(pipeline.preset.recipe)
    init_path = rows_dir(run_dir) / f"init-{recipe}.json"
    if not init_path.is_file():  # the demo's own eval_init: no evaluation runs here
        atomic_write_text(init_path, json.dumps(init_row(pipeline, recipe, pipeline.out / "salad-init"), indent=1))


def open_pipeline(run_dir):
    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset

    stored = json.loads((Path(run_dir) / "preset.json").read_text())
    return DemoPipeline(get_preset(stored["name"]), run_dir)


def run(args) -> list[dict]:
    from spans import atomic_write_text

    pipeline = open_pipeline(args.run)
    for stage in ("stage1_data", "features", "eval_init"):
        pipeline.result(stage)  # a clear error when the demo's data stages have not run
    recipe = args.recipe or recipe_name(pipeline.preset.recipe)
    init = init_checkpoint(pipeline, recipe)
    init_path = rows_dir(args.run) / f"init-{recipe}.json"
    if not init_path.is_file():
        atomic_write_text(init_path, json.dumps(init_row(pipeline, recipe, init), indent=1))
    rows = []
    for setting in args.settings:
        name, row = train_row(pipeline, args, recipe, setting, init)
        atomic_write_text(rows_dir(args.run) / f"{name}.json", json.dumps(row, indent=1))
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "paired"}), flush=True)
    return rows


def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _diff(comparison: dict) -> str:
    low, high = comparison["acc_diff_ci"]
    return f"{comparison['acc_diff']:+.1f} [{low:+.1f}, {high:+.1f}] ({comparison['gained']}/{comparison['lost']})"


def _row_line(r: dict) -> str:
    both = lambda key, d=1: f"{_fmt(r.get(f'seen_{key}'), d)} / {_fmt(r.get(f'unseen_{key}'), d)}"
    pairs = r["paired"]
    lr = lambda value: "–" if value is None else format(value, "g")
    adapter_lr = "frozen" if r["setting"] == "llm" else lr(r["adapter_learning_rate"])
    if r.get("adapter_parameter_learning_rates"):
        adapter_lr += " (" + ", ".join(f"{k} {v:g}" for k, v in r["adapter_parameter_learning_rates"].items()) + ")"
    kl = " / ".join(_fmt(pairs[role]["vs_init"]["kl_b"], 3) for role in ROLES)
    return (f"| {r['recipe']} | {r['setting']} | {r['steps']} | {adapter_lr} | {lr(r['llm_learning_rate'])} | "
            f"{r.get('projector_lora_r') or '–'} | {_fmt(r['train_seconds'], 0)} | "
            f"{_fmt(r['first_kd_loss'], 3)} → {_fmt(r['last_kd_loss'], 3)} | {_fmt(r.get('seen_text_acc'))} "
            f"({_fmt(r.get('seen_base_text_acc'))}) | {both('speech_acc')} | "
            f"{_diff(pairs['seen']['vs_init'])} / {_diff(pairs['unseen']['vs_init'])} | "
            f"{_diff(pairs['seen']['vs_cascade'])} / {_diff(pairs['unseen']['vs_cascade'])} | {kl} |")


def render_table(run_dir) -> str:
    """Markdown table of every stored row (inits first, then by recipe, setting and steps)."""
    rows = [json.loads(p.read_text()) for p in sorted(rows_dir(run_dir).glob("*.json"))]
    rows = [r for r in rows if "paired" in r]
    rows.sort(key=lambda r: (r["steps"] > 0, r["recipe"], r["setting"], r["steps"], r["adapter_learning_rate"] or 0))
    header = ("| recipe | setting | steps | adapter LR | LLM LR | LoRA r (front end) | train s | kd_loss first → "
              "last | text acc (base) | speech seen / unseen | vs salad-init seen / unseen: Δ [95 % CI] "
              "(gained/lost) | vs ASR cascade seen / unseen: Δ [95 % CI] (gained/lost) | choice KL seen / unseen |")
    return "\n".join([header, "|" + "---|" * 13] + [_row_line(r) for r in rows])


def main() -> None:
    from salad_demo.presets import RECIPES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo", help="demo folder with its data stages done")
    parser.add_argument("--recipe", choices=list(RECIPES), default=None, help="default: the run's recipe")
    parser.add_argument("--settings", nargs="+", default=["llm"], choices=list(LLM_LEARNING_RATES))
    parser.add_argument("--steps", type=int, default=None, help="Stage I steps (default: the preset's)")
    parser.add_argument("--adapter-learning-rate", type=float, default=None,
                        help="front-end learning rate (default: the preset's)")
    parser.add_argument("--llm-learning-rate", type=float, default=None,
                        help="LLM learning rate (default: per setting)")
    parser.add_argument("--projector-lora-r", type=int, default=0,
                        help="LoRA rank on the front end (0 = it trains in full)")
    parser.add_argument("--adapter-parameter-learning-rates", default=None,
                        help='per-parameter adapter learning rates as JSON, e.g. \'{"filler": 1e-3}\'')
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table from stored rows")
    args = parser.parse_args()
    if not args.table_only:
        run(args)
    add_demo_row(args.run, open_pipeline(args.run))
    write_section("Each row: `python benchmarks/demo_ablation.py --run runs/demo --recipe RECIPE --settings "
                  "SETTING [--steps N] [--adapter-learning-rate LR] [--llm-learning-rate LR] [--projector-lora-r "
                  "R]` (CPU, 2 cores), from the recipe's untrained init, on the demo's Stage I data and its held-out "
                  "spoken sets (seen voice flite slt, unseen Piper joe); rows are kept in `runs/demo/ablation/"
                  "*.json`. `train s` is the trainer's own runtime. Paired columns: the row's spoken answers "
                  "against salad-init's (the demo recipe, untrained) and against the ASR cascade's on the same "
                  "items, B − A in points with a paired-bootstrap 95 % interval and the discordant counts "
                  "(`evaluation.compare.compare_sides`); choice KL = mean KL(base LLM text ‖ spoken) choice "
                  "distributions. Reading and the demo's choice: the next section.\n\n" + render_table(args.run))


if __name__ == "__main__":
    main()
