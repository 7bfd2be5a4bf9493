"""Evaluation speed: wall time per 100 questions per mode, and shared-prefix vs per-choice scoring.

    .venv/bin/python benchmarks/eval_speed.py --llm LLM_DIR [--whisper WHISPER_DIR] [--task bigbench:general_knowledge]
        [--num-items 20] [--num-fewshot 5] [--modes text,speech,cascade] [--tts piper]

Defaults come from `salad_demo.assets.prepare_assets()` (SmolLM2-135M-Instruct, Whisper tiny.en). The SALAD model
is SmolLM2 + the Whisper encoder + a fresh MLP adapter (`build_salad`): weights do not change the compute, so the
timings hold for a trained checkpoint. Audio is synthesized (and encoder states computed) before timing, so
"speech" times the scoring itself; TTS and encoder time are reported separately. Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.api import Benchmark, EvalCache, EvalConfig, evaluate_model  # noqa: E402
from evaluation.audio import SpokenQuestions  # noqa: E402
from evaluation.benchmark_sources import load_benchmark  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", help="Causal LM folder (default: salad-assets llm).")
    parser.add_argument("--whisper", help="Whisper folder (default: salad-assets whisper).")
    parser.add_argument("--task", default="bigbench:general_knowledge")
    parser.add_argument("--num-items", type=int, default=20)
    parser.add_argument("--num-fewshot", type=int, default=5)
    parser.add_argument("--modes", default="text,speech,cascade")
    parser.add_argument("--tts", default="piper")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="Also write the numbers here.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.llm or (not args.whisper and {"speech", "cascade"} & set(modes)):
        from salad_demo.assets import prepare_assets

        assets = prepare_assets()
        args.llm = args.llm or str(assets["llm"])
        args.whisper = args.whisper or str(assets["whisper"])

    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(args.llm).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.llm)
    bench = load_benchmark(args.task)
    pool = bench.fewshot_pool or bench.items[: max(args.num_fewshot, 10)]
    items = [item for item in bench.items if item not in pool][: args.num_items]
    benchmark = Benchmark(bench.name, items, pool)
    common = dict(num_fewshot=args.num_fewshot, num_resamples=1, progress=False)

    def config(modes, share):
        return EvalConfig(modes=modes, share_prefix=share, **common)
    rows = {}

    def per_100(seconds):
        return 100.0 * seconds / len(items)

    if "text" in modes:
        for share in (True, False):
            result, seconds = timed(lambda: evaluate_model(
                None, None, base, tokenizer, benchmark, config("text", share)))
            rows[f"text (base LLM), {'shared prefix' if share else 'per-choice recomputation'}"] = per_100(seconds)
            acc = result["benchmarks"][bench.name]["base_text_acc"]
        rows["text speed-up of shared prefix"] = (
            rows["text (base LLM), per-choice recomputation"] / rows["text (base LLM), shared prefix"]
        )
    spoken = SpokenQuestions(args.tts)
    if {"speech", "cascade"} & set(modes):
        _, seconds = timed(lambda: [spoken.clip(item) for item in items])
        rows[f"TTS {args.tts} (first run; cached on disk afterwards)"] = per_100(seconds)
    if "speech" in modes:
        from modeling_salad import build_salad

        model, processor = build_salad(args.llm, args.whisper, adapter_type="mlp")
        cache = EvalCache()
        _, seconds = timed(lambda: [cache.encoder.encode(model, processor, spoken.clip(i))
                                    for i in items])
        rows["speech: frozen encoder (once; cached across checkpoints)"] = per_100(seconds)
        for share in (True, False):
            _, seconds = timed(lambda: evaluate_model(
                model, processor, None, None, benchmark, config("speech", share), spoken=spoken, cache=cache))
            rows[f"speech (SALAD), {'shared prefix' if share else 'per-choice recomputation'}"] = per_100(seconds)
        rows["speech speed-up of shared prefix"] = (
            rows["speech (SALAD), per-choice recomputation"] / rows["speech (SALAD), shared prefix"]
        )
    if "cascade" in modes:
        from evaluation.cascade import WhisperASR

        asr = WhisperASR.from_pretrained(args.whisper)
        _, seconds = timed(lambda: evaluate_model(
            None, None, base, tokenizer, benchmark, config("cascade", True), spoken=spoken, asr=asr))
        rows["cascade (Whisper ASR + base LLM text scoring)"] = per_100(seconds)

    print(f"{bench.name}: {len(items)} items, up to {args.num_fewshot} shots, {torch.get_num_threads()} threads")
    for name, value in rows.items():
        unit = "x" if "speed-up" in name else "s / 100 questions"
        print(f"| {name} | {value:.2f} {unit} |")
    if "text" in modes:
        print(f"(base text accuracy on these {len(items)} items: {acc:.1f} %)")
    if args.json:
        Path(args.json).write_text(json.dumps({"task": bench.name, "items": len(items), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
