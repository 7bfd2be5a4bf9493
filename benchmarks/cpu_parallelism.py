"""How to spend two CPU cores on the demo's small models: one process on both cores, or two processes on one each;
and what scoring several prompts in one forward pass gains (CPU, float32, the packaged real parts).

    .venv/bin/python benchmarks/cpu_parallelism.py                 # both parts, ~3 min on 2 cores
    .venv/bin/python benchmarks/cpu_parallelism.py --part threads  # or: --part batch

`threads`: per call, SmolLM2-135M scoring one 67-token prompt with 4 three-token choices (shared prefix), the
Whisper tiny.en encoder on one 30 s window, and one training step (forward + backward, 4 x 128 tokens from input
embeddings): in one process with 2 threads, with 1 thread, and in two processes at once with 1 thread each. Two
processes do the work of 2 / (their mean seconds per call) calls per second, one process 1 / (its seconds).

`batch`: seconds per prompt of `evaluation.scorer.score_continuations_batch` on B prompts of 67 tokens with 4
choices each, B = 1, 4, 8, 16 (2 threads), and the largest log-likelihood difference from B = 1.

Prints JSON lines. Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_parts():
    from transformers import AutoModelForCausalLM, WhisperModel

    from salad_demo.assets import prepare_assets

    assets = prepare_assets()
    llm = AutoModelForCausalLM.from_pretrained(assets["llm"]).eval()
    encoder = WhisperModel.from_pretrained(assets["whisper"]).encoder.eval()
    return llm, encoder


def seconds_per_call(fn, calls: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def prompts(count: int, length: int = 67, seed: int = 0) -> tuple[list[list[int]], list[list[list[int]]]]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40000, (count, length), generator=generator).tolist()
    choices = torch.randint(0, 40000, (count, 4, 3), generator=generator).tolist()
    return ids, choices


def time_workloads(threads: int, label: str) -> dict:
    """Seconds per call of the three workloads in this process."""
    from evaluation.scorer import score_continuations_batch

    torch.set_num_threads(threads)
    llm, encoder = load_parts()
    ids, choices = prompts(1)
    window = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    embeds = llm.get_input_embeddings()(torch.randint(0, 40000, (4, 128))).detach()

    def train_step():
        inputs = embeds.clone().requires_grad_()
        llm(inputs_embeds=inputs).logits.float().logsumexp(-1).mean().backward()

    with torch.no_grad():
        score = seconds_per_call(lambda: score_continuations_batch(llm, ids, choices), 20)
        encode = seconds_per_call(lambda: encoder(window), 8)
    return {"label": label, "threads": threads, "score_s": round(score, 3), "encoder_s": round(encode, 3),
            "train_step_s": round(seconds_per_call(train_step, 3), 3)}


def child(threads: int, label: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", str(threads), label], stdout=subprocess.PIPE,
                            text=True)


def result(process: subprocess.Popen) -> dict:
    return json.loads(process.communicate()[0].strip().splitlines()[-1])  # the asset lines come first


def threads_part() -> None:
    alone = [result(child(t, f"one process, {t} thread(s)")) for t in (2, 1)]
    pair = [child(1, f"two processes at once, process {i}") for i in (1, 2)]
    together = [result(p) for p in pair]
    for row in alone + together:
        print(json.dumps(row), flush=True)
    both = alone[0]
    for key in ("score_s", "encoder_s", "train_step_s"):
        mean_pair = sum(r[key] for r in together) / 2
        print(json.dumps({"workload": key, "calls_per_s_one_process_2_threads": round(1 / both[key], 2),
                          "calls_per_s_two_processes": round(2 / mean_pair, 2),
                          "ratio": round(both[key] * 2 / mean_pair, 2)}), flush=True)


def batch_part() -> None:
    from evaluation.scorer import score_continuations_batch

    torch.set_num_threads(2)
    llm, _ = load_parts()
    ids, choices = prompts(16)
    with torch.no_grad():
        single = [score_continuations_batch(llm, [p], [c])[0] for p, c in zip(ids, choices)]
        for size in (1, 4, 8, 16):
            run = lambda: [score_continuations_batch(llm, ids[i:i + size], choices[i:i + size])
                           for i in range(0, 16, size)]
            seconds = seconds_per_call(run, 2) / 16
            got = [item for batch in run() for item in batch]
            diff = max(abs(a[0] - b[0]) for x, y in zip(got, single) for a, b in zip(x, y))
            print(json.dumps({"batch": size, "seconds_per_prompt": round(seconds, 3),
                              "max_abs_logprob_diff_vs_single": diff}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("threads", "batch", "all"), default="all")
    parser.add_argument("--worker", nargs=2, metavar=("THREADS", "LABEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(time_workloads(int(args.worker[0]), args.worker[1])))
        return
    if args.part in ("threads", "all"):
        threads_part()
    if args.part in ("batch", "all"):
        batch_part()


if __name__ == "__main__":
    main()
