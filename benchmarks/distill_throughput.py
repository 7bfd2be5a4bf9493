"""Distillation throughput and loss memory (CPU by default; CUDA when --device cuda).

    python benchmarks/distill_throughput.py                 # both parts, prints a markdown table + JSON
    python benchmarks/distill_throughput.py --part trainers --steps 8 --vocab 32000
    python benchmarks/distill_throughput.py --part loss --loss_vocab 152064 --loss_positions 2048

Part "trainers": the same tiny text-only KD workload and batch through
  (a) trainers.DistillationTrainer (SALAD; the fused KD from hidden states at the distilled positions), and
  (b) TRL's GKDTrainer (trl.experimental.gkd, lmbda=0, beta=0: off-policy forward KL on the same tokens),
both with a frozen teacher copy and the same student LLM, in ONE process: ``--rounds`` rounds, each timing a fresh
ours then a fresh GKD trainer back to back (so both see the same machine load); the ratio is of the medians.
``--threads`` sets torch's thread count (0 = torch's default). ``--profile`` prints where each trainer spends its
time (collator, teacher forward, student forward, loss, backward, optimizer and the rest; wall seconds of one run).
Part "loss": distillation_loss forward+backward at vocab x positions, chunked vs naive (one chunk): peak memory
above the inputs and time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TEXTS = [
    "the quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence",
    "planets move around the sun in paths called orbits and the time for one orbit is called a year",
    "good bread needs flour water salt and yeast and a baker who waits patiently for the dough to rise",
    "rivers carry water from mountains to the sea and shape the valleys they pass through over ages",
]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tiny_lm_and_tokenizer(vocab: int):
    from trainers.tiny import build_tiny_salad

    model, processor = build_tiny_salad(seed=0, hidden_size=64)
    model.language_model.resize_token_embeddings(vocab)
    model.config.text_config.vocab_size = vocab
    return model, processor


def _text_rows(n: int, repeat: int):
    return [{"id": f"t{i}", "text": " ".join([TEXTS[i % len(TEXTS)]] * repeat)} for i in range(n)]


def build_ours(args):
    import datasets
    import torch

    from trainers import DistillationConfig, DistillationTrainer

    torch.manual_seed(0)
    model, processor = _tiny_lm_and_tokenizer(args.vocab)
    rows = [{"id": r["id"], "spans": [{"text": r["text"], "audio": None}], "replay": True}
            for r in _text_rows(args.batch * args.steps, args.repeat)]
    dataset = datasets.Dataset.from_list(rows)
    config = DistillationConfig(output_dir="/tmp/bench-ours", max_steps=args.steps,
                                per_device_train_batch_size=args.batch, learning_rate=1e-4, trainable="adapter+llm",
                                teacher_mode="frozen_copy", beta=0.0, kd_chunk_size=args.chunk,
                                kd_implementation=args.kd_implementation, logging_steps=1, save_strategy="no",
                                report_to="none", use_cpu=args.device == "cpu", bf16=False, max_length=None,
                                disable_tqdm=True, lr_scheduler_type="constant", seed=0)
    return DistillationTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor)


def build_gkd(args):
    import copy

    import datasets
    import torch
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    torch.manual_seed(0)
    salad, processor = _tiny_lm_and_tokenizer(args.vocab)
    student = salad.language_model
    teacher = copy.deepcopy(student).eval()
    tokenizer = processor.tokenizer

    def collate(rows):
        encoded = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}

    dataset = datasets.Dataset.from_list(_text_rows(args.batch * args.steps, args.repeat))
    config = GKDConfig(output_dir="/tmp/bench-gkd", max_steps=args.steps, per_device_train_batch_size=args.batch,
                       learning_rate=1e-4, lmbda=0.0, beta=0.0, seq_kd=False, logging_steps=1, save_strategy="no",
                       report_to="none", use_cpu=args.device == "cpu", bf16=False, max_length=None,
                       disable_tqdm=True, lr_scheduler_type="constant", seed=0)
    return GKDTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                      processing_class=tokenizer, data_collator=collate)


def run_trainers(args) -> dict:
    """Both trainers in this process, alternating, ``args.rounds`` times; medians and their ratio."""
    import statistics

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    runs = {"ours": [], "gkd": []}
    load_before = open("/proc/loadavg").read().split()[:3]
    for _ in range(args.rounds):
        for name, build in (("ours", build_ours), ("gkd", build_gkd)):
            runs[name].append(_timed_train(build(args), args, lambda batch: int(batch["attention_mask"].sum())))
    result = {name: {"tokens": rows[0]["tokens"],
                     "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows),
                     "all_tokens_per_s": [r["tokens_per_s"] for r in rows]} for name, rows in runs.items()}
    result["speedup"] = round(result["ours"]["tokens_per_s"] / result["gkd"]["tokens_per_s"], 3)
    result["threads"] = torch.get_num_threads()
    result["loadavg_before_after"] = [load_before, open("/proc/loadavg").read().split()[:3]]
    return result


def _timed_train(trainer, args, count_tokens) -> dict:
    loader = trainer.get_train_dataloader()
    tokens = sum(count_tokens(batch) for _, batch in zip(range(args.steps), loader))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def _timed(phases: dict, label: str, fn):
    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - start
    return wrapper


def _phase_split(trainer, wrap: list[tuple[object, str, str]], derive) -> dict:
    """Seconds per phase of one ``trainer.train()``: each (owner, attribute, label) is timed, ``derive`` maps
    the raw totals to exclusive phases."""
    phases: dict[str, float] = {}
    for owner, name, label in wrap:
        setattr(owner, name, _timed(phases, label, getattr(owner, name)))
    start = time.perf_counter()
    trainer.train()
    phases["train"] = time.perf_counter() - start
    split = derive(phases)
    return {k: round(v, 2) for k, v in split.items()} | {"share_of_train": {
        k: round(v / phases["train"], 3) for k, v in split.items() if k != "train"}}


def profile_phases(args) -> dict:
    """Where each trainer's time goes: collator, teacher forward, student forward, loss, backward, the rest."""
    import torch

    import trainers.trainer as ours_module

    if args.threads:
        torch.set_num_threads(args.threads)
    ours = build_ours(args)
    ours_split = _phase_split(ours, [
        (ours, "data_collator", "collator"), (ours, "teacher_hidden", "teacher"),
        (ours_module, "hidden_at_positions", "forwards"), (ours_module, "fused_salad_objective", "loss"),
        (ours, "compute_loss", "compute_loss"), (ours, "training_step", "training_step")],
        lambda p: {"collator": p.get("collator", 0), "teacher_fwd": p["teacher"],
                   "student_fwd": p["forwards"] - p["teacher"], "loss (fused, with its gradients)": p["loss"],
                   "student_bwd": p["training_step"] - p["compute_loss"],
                   "optimizer+other": p["train"] - p["training_step"] - p.get("collator", 0), "train": p["train"]})
    gkd = build_gkd(args)
    gkd_split = _phase_split(gkd, [
        (gkd, "data_collator", "collator"), (gkd.teacher_model, "forward", "teacher"),
        (gkd.model, "forward", "student"), (gkd, "generalized_jsd_loss", "loss"),
        (gkd, "compute_loss", "compute_loss"), (gkd, "training_step", "training_step")],
        lambda p: {"collator": p.get("collator", 0), "teacher_fwd": p["teacher"], "student_fwd": p["student"],
                   "loss (forward only)": p["loss"],
                   "student_bwd (incl. the loss's)": p["training_step"] - p["compute_loss"],
                   "optimizer+other": p["train"] - p["training_step"] - p.get("collator", 0), "train": p["train"]})
    return {"ours": ours_split, "gkd": gkd_split, "threads": torch.get_num_threads(),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def run_loss(args) -> dict:
    import torch

    from trainers.losses import distillation_loss

    device = torch.device(args.device)
    dtype = getattr(torch, args.loss_dtype)
    g = torch.Generator(device="cpu").manual_seed(0)
    # generated directly in the target dtype, so no float32 temporaries inflate the baseline peak
    student = torch.randn(args.loss_positions, args.loss_vocab, generator=g, dtype=dtype).mul_(2).to(device)
    teacher = torch.randn(args.loss_positions, args.loss_vocab, generator=g, dtype=dtype).mul_(2).to(device)
    student.requires_grad_()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _peak_rss_mb() * 2**20
    start = time.perf_counter()
    loss = distillation_loss(student, teacher, chunk_size=args.loss_chunk or None)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _peak_rss_mb() * 2**20
    seconds = time.perf_counter() - start
    return {"chunk": args.loss_chunk or None, "extra_peak_mb": round((peak - base) / 2**20, 1),
            "seconds": round(seconds, 3), "loss": float(loss)}


def _subprocess(extra: list[str]) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *extra], capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {' '.join(extra)}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "trainers", "loss"], default="all")
    parser.add_argument("--child", choices=["loss"], help=argparse.SUPPRESS)
    parser.add_argument("--kd_implementation", default="fused", choices=["fused", "materialized"],
                        help="our trainer's KD path (part trainers)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours/GKD rounds (part trainers)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--profile", action="store_true", help="print each trainer's time per phase and exit")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="text repeats per row (sequence length)")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--loss_vocab", type=int, default=152064)
    parser.add_argument("--loss_positions", type=int, default=2048)
    parser.add_argument("--loss_dtype", default="bfloat16")
    parser.add_argument("--loss_chunk", type=int, default=64)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.child:
        result = run_loss(args)
        print(json.dumps(result))
        return result

    if args.profile:
        print(json.dumps(profile_phases(args), indent=2))
        return None
    common = ["--device", args.device]
    results = {}
    if args.part in ("all", "trainers"):
        results["trainers"] = run_trainers(args)
    if args.part in ("all", "loss"):
        shared = common + ["--loss_vocab", str(args.loss_vocab), "--loss_positions", str(args.loss_positions),
                           "--loss_dtype", args.loss_dtype]
        results["loss_chunked"] = _subprocess(["--child", "loss", *shared, "--loss_chunk", str(args.loss_chunk)])
        results["loss_naive"] = _subprocess(["--child", "loss", *shared, "--loss_chunk", "0"])
        results["loss_memory_ratio"] = round(
            results["loss_chunked"]["extra_peak_mb"] / max(results["loss_naive"]["extra_peak_mb"], 1e-6), 3)
    print(json.dumps(results, indent=2))
    if args.json:
        from spans import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
