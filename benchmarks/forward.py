"""Forward and generate latency + peak memory of the embedded SALAD model on CPU, per second of audio.

Builds SmolLM2-135M-Instruct + Whisper tiny.en (prepared by `salad-assets`) with `build_salad`, feeds one
chat turn holding a clip of each duration, and times `model(**inputs)` (prefill) and `model.generate` for
both `audio_padding` modes. Prints a markdown table and writes it into benchmarks/RESULTS.md under
"## Forward and generate latency (CPU)" (replacing that section when present).

    python benchmarks/forward.py [--durations 2 10 30] [--repeats 3] [--new-tokens 16] [--adapter-type mlp]
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modeling_salad import SAMPLING_RATE

HEADING = "## Forward and generate latency (CPU)"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Deterministic amplitude-modulated tones + noise (content does not matter for latency)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    signal = np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.normal(size=t.shape)
    return (0.3 * signal).astype(np.float32)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args) -> list[dict]:
    from modeling_salad import build_salad
    from salad_demo.assets import prepare_assets

    assets = prepare_assets()
    rows = []
    for padding in ("none", "window"):
        model, processor = build_salad(assets["llm"], assets["whisper"], adapter_type=args.adapter_type,
                                       audio_padding=padding)
        model.eval()
        for seconds in args.durations:
            conversation = [{"role": "user", "content": [
                {"type": "audio", "array": speech_like(seconds), "sampling_rate": SAMPLING_RATE},
                {"type": "text", "text": "What was said?"}]}]
            inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
            with torch.inference_mode():
                forward_s = timed(lambda: model(**inputs, logits_to_keep=1), args.repeats)
                generate_s = timed(
                    lambda: model.generate(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                           do_sample=False), args.repeats)
            rows.append({
                "padding": padding, "seconds": seconds, "tokens": inputs["input_ids"].shape[1],
                "audio_tokens": int((inputs["input_ids"] == processor.audio_token_id).sum()),
                "forward_s": forward_s, "generate_s": generate_s, "rss_mb": peak_rss_mb(),
            })
            print(f"  {padding:6s} {seconds:5.1f} s audio: forward {forward_s:.3f} s, generate {generate_s:.3f} s",
                  file=sys.stderr, flush=True)
        del model
    return rows


def to_markdown(rows, args, command: str) -> str:
    lines = [
        HEADING, "",
        f"Command: `{command}`  ",
        f"Model: SmolLM2-135M-Instruct + Whisper tiny.en encoder + `{args.adapter_type}` adapter (fp32), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}. "
        f"Median of {args.repeats} runs after a warm-up; generate = prefill + {args.new_tokens} greedy tokens with "
        "KV cache. Peak RSS is the process maximum so far (rows run in table order). "
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs share the CPU; "
        "latencies scale with it).", "",
        "| audio_padding | audio (s) | prompt tokens | audio tokens | forward (s) | forward per audio s | "
        f"generate {args.new_tokens} tok (s) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['padding']} | {r['seconds']:g} | {r['tokens']} | {r['audio_tokens']} | {r['forward_s']:.3f} | "
            f"{r['forward_s'] / r['seconds']:.3f} | {r['generate_s']:.3f} | {r['rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(section: str, path: Path = RESULTS):
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if HEADING in text:
        start = text.index(HEADING)
        following = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[following + 1 :] if following != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    from spans import atomic_write_text

    atomic_write_text(path, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[2.0, 10.0, 30.0], help="Clip lengths (s)")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per measurement (median)")
    parser.add_argument("--new-tokens", type=int, default=16, help="Tokens generated per generate call")
    parser.add_argument("--adapter-type", default="mlp", choices=["mlp", "transformer"], help="Adapter to build")
    parser.add_argument("--no-write", action="store_true", help="Only print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    command = "python benchmarks/forward.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = to_markdown(run(args), args, command.strip())
    print(section)
    if not args.no_write:
        write_results(section)


if __name__ == "__main__":
    main()
