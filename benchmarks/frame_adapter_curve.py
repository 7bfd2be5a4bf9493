"""Learning curve of the paper's continuous path: frame adapters (causal transformer, MLP) on padded Whisper
tiny.en frames (`audio_padding="window"`) in front of a frozen SmolLM2-135M-Instruct, trained by Stage I
distillation (teacher = the same LLM reading the text of the span document), measured against training minutes.

    python benchmarks/frame_adapter_curve.py [--out runs/frame-curve] [--adapters transformer mlp]
        [--marks 0,2,5,10,20,30] [--clock cpu|wall] [--limit-train N] [--limit-heldout N] [--eval-items N]
        [--plot-only]

Data: the demo's Stage I domain (`salad_demo.pipeline.DemoPipeline` stage `stage1_data`: BIG-bench narrative
texts as interleaved speech/text span documents spoken by the demo's training voices), of which a seeded part is
held out. The frozen encoder's states of every clip are computed once into OUT/encoder-states (the one encoder-state
cache, `spans.EncoderStatesCache`, keyed by the encoder's identity and the adapter recipe) and read from there.

At each mark (minutes of training time: process CPU time by default, or wall time; evaluation excluded; both
clocks are recorded in every row)
the run measures, for the current adapter:
  * held-out KD loss: the distillation objective KL(text-context LLM || speech-context LLM) per distilled token on
    the held-out span documents (`trainers.diagnostics.misalignment`, the teacher is the frozen LLM);
  * on the demo's held-out multiple-choice questions (the default preset's `eval_tasks`, the demo's draw and
    few-shot pool, the first --eval-items scored items of each, 2-shot, spoken by the seen eval voice flite:slt):
    speech accuracy, the gap (base text acc - speech acc), the gap closed vs the untrained adapter (mark 0), and
    the mean KL from the base LLM's text choice distribution to the model's spoken one.
Each row is appended atomically to OUT/curve.jsonl; adapter weights and optimizer state are saved at every mark,
so a killed run resumes at its last mark (it loses at most one interval). OUT/frame_adapter_curve.png is the plot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# CPU-sized adapters (the paper's transformer is 12 layers x 960 wide; this is its shape scaled to 2 cores)
ADAPTERS = {
    "transformer": {"adapter_type": "transformer", "stack_factor": 8, "adapter_hidden_size": 384,
                    "adapter_num_layers": 4, "audio_padding": "window"},
    "mlp": {"adapter_type": "mlp", "stack_factor": 8, "adapter_hidden_size": 256, "audio_padding": "window"},
}
EVAL_VOICE = "flite:slt"


def _log(message: str) -> None:
    print(f"[frame-curve] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def parse_marks(text: str) -> list[float]:
    try:
        marks = sorted({float(m) for m in text.split(",") if m.strip()})
    except ValueError:
        raise ValueError(f"--marks must be comma-separated minutes, got {text!r}") from None
    if not marks or marks[0] != 0.0:
        raise ValueError(f"--marks must start at 0 (the untrained adapter), got {text!r}")
    return marks


# ------------------------------------------------------------------------------------------------ rows
def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(path: Path, row: dict) -> None:
    """Rewrite the JSONL with the new row (atomic: a kill leaves the old file or the new one)."""
    from spans.files import atomic_write_text

    rows = read_rows(path) + [row]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------------ setup
class CurveData:
    """Training documents, held-out documents, eval benchmarks and the shared caches of one curve folder."""

    def __init__(self, out: Path, train_documents: int, heldout_documents: int, eval_items: int, seed: int = 0):
        from salad_demo.pipeline import DemoPipeline
        from salad_demo.presets import get_preset

        self.out, self.seed, self.eval_items = out, seed, eval_items
        preset = get_preset("default")
        preset.name, preset.stage1_documents, preset.replay_documents = "frame-curve", train_documents + heldout_documents, 1
        self.pipeline = DemoPipeline(preset, out / "demo")
        self.pipeline.run(["assets", "stage1_data"])
        self.assets = self.pipeline.assets
        self.preset = preset
        self.heldout_count = heldout_documents
        self.encoder_dir = out / "encoder-states" / "whisper-tiny.en-window"
        self._split()

    def limit(self, train: int | None, heldout: int | None) -> None:
        """Use only the first `train` training and `heldout` held-out documents (a smaller CPU budget)."""
        if train:
            self.train = self.train.select(range(min(train, len(self.train))))
        if heldout:
            self.heldout = self.heldout[:heldout]
        _log(f"using {len(self.train)} training documents, {len(self.heldout)} held-out documents")

    def _split(self):
        from datasets_scripts.tts import stable_hash

        docs = self.pipeline._span_documents(self.pipeline.result("stage1_data")["dataset"])
        ids = sorted(docs["id"], key=lambda i: stable_hash("heldout", self.seed, i))
        heldout = set(ids[: self.heldout_count])
        self.train = docs.filter(lambda d: d["id"] not in heldout)
        self.heldout = [d for d in docs if d["id"] in heldout]
        self.heldout.sort(key=lambda d: stable_hash("heldout", self.seed, d["id"]))
        _log(f"{len(self.train)} training documents, {len(self.heldout)} held-out documents")

    def benchmarks(self):
        """The demo's eval items (same draw, same few-shot pool), the first `eval_items` scored items per task."""
        from evaluation.api import Benchmark
        from salad_demo.demo_data import eval_items

        p, benches = self.preset, []
        for task in p.eval_tasks:
            items = eval_items(task, p.eval_items_per_task, p.eval_max_question_words, seed=p.seed)
            pool, scored = items[: p.fewshot_pool_size], items[p.fewshot_pool_size:][: self.eval_items]
            benches.append(Benchmark(task, scored, fewshot_pool=pool))
        return benches


def build_model(assets: dict, adapter: str, seed: int):
    import torch

    from modeling_salad import build_salad

    torch.manual_seed(seed)
    return build_salad(assets["llm"], assets["whisper"], **ADAPTERS[adapter])


def encode_training_clips(data: CurveData, model, processor):
    """The encoder-state cache of the training and held-out clips, bound to `model`'s encoder (filled once)."""
    from spans import EncoderStatesCache

    cache = EncoderStatesCache.for_model(model, processor, data.encoder_dir)
    written = cache.precompute(model, processor, list(data.train) + data.heldout)
    _log(f"encoder states: {written} clips written to {data.encoder_dir}")
    return cache


def base_text_records(data: CurveData) -> dict:
    """Base-LLM text scores of the eval items (computed once, kept in OUT/base_text.json)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.api import evaluate_model
    from spans.files import atomic_write_json

    path = data.out / f"base_text-{data.eval_items}.json"
    if path.is_file():
        return json.loads(path.read_text())
    base = AutoModelForCausalLM.from_pretrained(data.assets["llm"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(data.assets["llm"])
    result = evaluate_model(None, None, base, tokenizer, data.benchmarks(), eval_config(data.preset, "text", True))
    records = {name: [r["base_text"] for r in recs] for name, recs in result["predictions"].items()}
    atomic_write_json(path, records)
    return records


# ------------------------------------------------------------------------------------------------ measuring
def eval_config(preset, mode: str, progress: bool = False):
    """The demo's scoring settings (shots, context budget) for one mode."""
    from evaluation.api import EvalConfig

    return EvalConfig(modes=[mode], num_fewshot=preset.num_fewshot, max_length=preset.eval_max_length,
                      num_resamples=200, seed=preset.seed, progress=progress)


class Measurer:
    """Held-out KD loss and spoken-MC scores of the current model, against the base LLM's text scores."""

    def __init__(self, data: CurveData, processor, collator):
        from evaluation.api import EvalCache
        from evaluation.audio import SpokenQuestions
        from spans import EncoderStatesCache

        self.data, self.processor, self.collator = data, processor, collator
        self.base = base_text_records(data)
        self.spoken = SpokenQuestions(EVAL_VOICE, data.out / "eval-tts")
        # entries are keyed by the encoder's identity (weights, padding, adapter recipe): one folder serves both
        self.cache = EvalCache(encoder=EncoderStatesCache(data.out / "eval-encoder", keep_in_memory=True))

    def __call__(self, model, predictions_dir: Path | None = None) -> dict:
        """Scores of `model`; with `predictions_dir`, per-item records (base text + speech choice log-likelihoods)
        are written there as `salad-eval` does, so `salad-eval compare` can pair any two marks."""
        from evaluation.api import evaluate_model
        from evaluation.compare import choice_kl
        from evaluation.metrics import bootstrap_ci
        from trainers.diagnostics import misalignment

        start = time.perf_counter()
        heldout_kd = misalignment(model, self.processor, self.data.heldout, collator=self.collator)
        result = evaluate_model(model, self.processor, None, None, self.data.benchmarks(),
                                eval_config(self.data.preset, "speech"), spoken=self.spoken, cache=self.cache)
        base_correct, speech_correct, kls = [], [], []
        for name, records in result["predictions"].items():
            base = {r["id"]: r for r in self.base[name]}
            for record in records:
                text = base[record["id"]]
                record["base_text"] = text
                base_correct.append(text["correct"])
                speech_correct.append(record["speech"]["correct"])
                kls.append(choice_kl(text["logprobs"], record["speech"]["logprobs"]))
        if predictions_dir is not None:
            write_predictions(predictions_dir, result["predictions"])
        n = len(speech_correct)
        speech_acc = 100.0 * sum(speech_correct) / n
        base_acc = 100.0 * sum(base_correct) / n
        return {"heldout_kd": heldout_kd, "n_items": n, "speech_acc": speech_acc,
                "speech_acc_ci": list(bootstrap_ci(speech_correct, 1000, seed=0)), "base_text_acc": base_acc,
                "gap": base_acc - speech_acc, "choice_kl": sum(kls) / n,
                "speech_correct": [bool(c) for c in speech_correct],
                "eval_seconds": time.perf_counter() - start}


def write_predictions(folder: Path, predictions: dict) -> None:
    from spans.files import atomic_write_text

    for name, records in predictions.items():
        atomic_write_text(folder / "predictions" / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in records))


# ------------------------------------------------------------------------------------------------ training
def make_callback(adapter, marks, rows_path, state_path, measure, seed, clock="cpu"):
    """A TrainerCallback that measures at every mark of training time (`clock`: "cpu" = process CPU seconds,
    "wall" = wall seconds; evaluation excluded from both) and saves the adapter state."""
    import torch
    from transformers import TrainerCallback

    class CurveCallback(TrainerCallback):
        def __init__(self):
            self.clock = {"train_seconds": 0.0, "cpu_seconds": 0.0, "steps": 0}
            self.losses, self.model = [], None

        def _resume(self, model, optimizer, scheduler):
            if state_path.is_file():
                saved = torch.load(state_path, weights_only=False)
                model.multi_modal_projector.load_state_dict(saved["projector"])
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
                torch.set_rng_state(saved["rng"])
                self.clock = saved["clock"]
                _log(f"{adapter}: resumed at {self.clock['train_seconds'] / 60:.1f} training minutes")

        def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kw):
            self.model, self.optimizer, self.scheduler = model, optimizer, lr_scheduler
            self._resume(model, optimizer, lr_scheduler)
            done = [r["mark_min"] for r in read_rows(rows_path) if r["adapter"] == adapter]
            if not done:
                self._measure(control, 0.0)
            self._restart_clock()

        def _restart_clock(self):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "kd_loss" in logs:
                self.losses.append(float(logs["kd_loss"]))

        def on_step_end(self, args, state, control, **kw):
            now, cpu = time.perf_counter(), time.process_time()
            self.clock["train_seconds"] += now - self.wall
            self.clock["cpu_seconds"] += cpu - self.cpu
            self.clock["steps"] += 1
            self.wall, self.cpu = now, cpu
            done = {r["mark_min"] for r in read_rows(rows_path) if r["adapter"] == adapter}
            elapsed = self.clock["cpu_seconds" if clock == "cpu" else "train_seconds"]
            due = [m for m in marks if m not in done and elapsed >= 60 * m]
            if due:
                self._save()
                self._measure(control, max(due))
                self._restart_clock()

        def _save(self):
            from spans.files import atomic_write_bytes
            import io

            buffer = io.BytesIO()
            torch.save({"projector": self.model.multi_modal_projector.state_dict(),
                        "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "rng": torch.get_rng_state(), "clock": dict(self.clock)}, buffer)
            atomic_write_bytes(state_path, buffer.getvalue())

        def _measure(self, control, mark):
            _log(f"{adapter}: measuring at mark {mark:g} min ({self.clock['steps']} steps)")
            row = {"adapter": adapter, "mark_min": mark, "clock": clock, "train_minutes": self.clock["train_seconds"] / 60,
                   "cpu_minutes": self.clock["cpu_seconds"] / 60, "steps": self.clock["steps"],
                   "train_kd_loss": (sum(self.losses[-5:]) / len(self.losses[-5:])) if self.losses else None,
                   "recipe": ADAPTERS[adapter], "seed": seed, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   **measure(self.model, rows_path.parent / "eval" / f"{adapter}-{mark:g}min")}
            self.model.train()
            append_row(rows_path, row)
            _log(f"{adapter}: " + json.dumps({k: v for k, v in row.items() if k not in ("speech_correct",
                                                                                         "recipe")}))
            if mark >= marks[-1]:
                control.should_training_stop = True

    return CurveCallback()


def run_adapter(data: CurveData, adapter: str, marks: list[float], args) -> None:
    from trainers.collator import SpanDocumentCollator
    from trainers.config import DistillationConfig
    from trainers.trainer import DistillationTrainer

    rows_path = data.out / "curve.jsonl"
    done = {r["mark_min"] for r in read_rows(rows_path) if r["adapter"] == adapter}
    if all(m in done for m in marks):
        _log(f"{adapter}: every mark measured already")
        return
    model, processor = build_model(data.assets, adapter, args.seed)
    encoder_cache = encode_training_clips(data, model, processor)
    collator = SpanDocumentCollator(processor, max_length=args.max_length, speech_policy="all", seed=args.seed,
                                    encoder_cache=encoder_cache)
    config = DistillationConfig(
        output_dir=str(data.out / f"train-{adapter}"), trainable="adapter", alpha=1.0, beta=0.0,
        learning_rate=args.learning_rate, adapter_learning_rate=args.learning_rate,
        lr_scheduler_type="constant_with_warmup", warmup_steps=10, max_steps=1_000_000,
        per_device_train_batch_size=args.batch_size, max_length=args.max_length, logging_steps=5,
        save_strategy="no", report_to="none", diagnostics_steps=0, kd_chunk_size=256, seed=args.seed,
        dataloader_num_workers=0, bf16=False, speech_policy="all", save_pre_decay_checkpoint=False,
        text_replay_ratio=0.0, weight_decay=0.0, disable_tqdm=True)
    measure = Measurer(data, processor, collator)
    callback = make_callback(adapter, marks, rows_path, data.out / f"state-{adapter}.pt", measure, args.seed,
                             args.clock)
    trainer = DistillationTrainer(model=model, args=config, train_dataset=data.train, processing_class=processor,
                                  data_collator=collator, callbacks=[callback])
    trainer.train()


# ------------------------------------------------------------------------------------------------ plot + table
def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = (("gap_closed", "gap closed vs untrained (points)"), ("heldout_kd", "held-out KD loss (nats/token)"),
              ("choice_kl", "held-out choice KL text→speech"))
    for adapter in sorted({r["adapter"] for r in rows}):
        mine = sorted((r for r in rows if r["adapter"] == adapter), key=lambda r: r["train_minutes"])
        for ax, (key, label) in zip(axes, panels):
            minutes = [r["cpu_minutes" if r.get("clock") == "cpu" else "train_minutes"] for r in mine]
            ax.plot(minutes, [with_derived(mine, r)[key] for r in mine], "o-", label=adapter)
            ax.set_xlabel(f"training minutes ({mine[0].get('clock', 'wall')} time, 1 thread, shared CPU)")
            ax.set_ylabel(label)
    axes[0].axhline(0.0, color="grey", lw=0.8)
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def with_derived(rows_of_adapter: list[dict], row: dict) -> dict:
    """`row` plus what compares it with the adapter's untrained row: gap closed (points, fraction), paired
    accuracy change and the KL ratio."""
    init = next(r for r in rows_of_adapter if r["mark_min"] == 0.0)
    closed = init["gap"] - row["gap"]
    gained = sum(1 for a, b in zip(init["speech_correct"], row["speech_correct"]) if b and not a)
    lost = sum(1 for a, b in zip(init["speech_correct"], row["speech_correct"]) if a and not b)
    return {**row, "gap_closed": closed, "gap_closed_fraction": closed / init["gap"] if init["gap"] else math.nan,
            "gained": gained, "lost": lost, "kl_ratio": row["choice_kl"] / init["choice_kl"],
            "kd_ratio": row["heldout_kd"] / init["heldout_kd"]}


def table(rows: list[dict]) -> str:
    lines = ["| adapter | mark (min) | train min (wall) | CPU min | steps | train KD | held-out KD (ratio to 0) | "
             "speech acc [95% CI] | base text | gap | gap closed (pts) | gained / lost vs 0 | choice KL (ratio) | "
             "eval s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for adapter in sorted({r["adapter"] for r in rows}, reverse=True):
        mine = sorted((r for r in rows if r["adapter"] == adapter), key=lambda r: r["train_minutes"])
        for r in (with_derived(mine, r) for r in mine):
            kd = "–" if r["train_kd_loss"] is None else f"{r['train_kd_loss']:.3f}"
            lo, hi = r["speech_acc_ci"]
            lines.append(
                f"| {adapter} | {r['mark_min']:g} | {r['train_minutes']:.1f} | {r['cpu_minutes']:.1f} | {r['steps']} | "
                f"{kd} | {r['heldout_kd']:.3f} ({r['kd_ratio']:.2f}) | {r['speech_acc']:.1f} [{lo:.1f}, {hi:.1f}] | "
                f"{r['base_text_acc']:.1f} | {r['gap']:.1f} | {r['gap_closed']:+.1f} | {r['gained']} / {r['lost']} | "
                f"{r['choice_kl']:.3f} ({r['kl_ratio']:.2f}) | {r['eval_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/frame-curve", help="output folder (rows, caches, plot)")
    parser.add_argument("--adapters", nargs="+", default=["transformer", "mlp"], choices=list(ADAPTERS))
    parser.add_argument("--marks", default="0,2,5,10,20,30", help="training minutes at which to measure")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="what a training minute is: process CPU time (fair on a shared, oversubscribed "
                             "machine) or wall time; evaluation time is excluded from both")
    parser.add_argument("--limit-train", type=int, default=None, help="train on the first N training documents")
    parser.add_argument("--limit-heldout", type=int, default=None, help="use the first N held-out documents")
    parser.add_argument("--train-documents", type=int, default=120, help="Stage I span documents trained on")
    parser.add_argument("--heldout-documents", type=int, default=16, help="span documents held out for the KD loss")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="adapter learning rate (constant)")
    parser.add_argument("--batch-size", type=int, default=2, help="documents per step")
    parser.add_argument("--max-length", type=int, default=256, help="training sequence length (tokens)")
    parser.add_argument("--eval-items", type=int, default=40,
                        help="scored eval items per task (the demo's draw, first N after the few-shot pool)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on an oversubscribed machine more threads only spin)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-only", action="store_true", help="only redraw the plot and print the table")
    args = parser.parse_args(argv)
    marks = parse_marks(args.marks)
    out = Path(args.out)
    if not args.plot_only:
        import torch

        torch.set_num_threads(args.threads)
        data = CurveData(out, args.train_documents, args.heldout_documents, args.eval_items, args.seed)
        data.limit(args.limit_train, args.limit_heldout)
        for adapter in args.adapters:
            run_adapter(data, adapter, marks, args)
    rows = read_rows(out / "curve.jsonl")
    if rows:
        print(f"plot: {plot(rows, out / 'frame_adapter_curve.png')}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
