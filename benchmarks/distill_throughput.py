"""Distillation throughput and loss memory (CPU by default; CUDA when --device cuda).

    python benchmarks/distill_throughput.py                 # both parts, prints a markdown table + JSON
    python benchmarks/distill_throughput.py --part trainers --steps 8 --vocab 32000
    python benchmarks/distill_throughput.py --part loss --loss_vocab 152064 --loss_positions 2048

Part "trainers": the same tiny text-only KD workload and batch through
  (a) trainers.DistillationTrainer (SALAD; logits only at distilled positions, chunked KL), and
  (b) TRL's GKDTrainer (trl.experimental.gkd, lmbda=0, beta=0: off-policy forward KL on the same tokens),
both with a frozen teacher copy and the same student LLM; tokens/s and peak memory (each run in its own process;
peak RSS on CPU, torch.cuda.max_memory_allocated on CUDA).
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


def run_ours(args) -> dict:
    import datasets
    import torch

    from trainers import DistillationConfig, DistillationTrainer

    torch.manual_seed(0)
    model, processor = _tiny_lm_and_tokenizer(args.vocab)
    rows = [{"id": r["id"], "spans": [{"text": r["text"], "audio": None}], "replay": True}
            for r in _text_rows(args.batch * args.steps, args.repeat)]
    dataset = datasets.Dataset.from_list(rows)
    config = DistillationConfig(output_dir="/tmp/bench-ours", max_steps=args.steps, per_device_train_batch_size=args.batch,
                                learning_rate=1e-4, trainable="adapter+llm", teacher_mode="frozen_copy", beta=0.0,
                                kd_chunk_size=args.chunk, logging_steps=1, save_strategy="no", report_to="none",
                                use_cpu=args.device == "cpu", bf16=False, max_length=None, disable_tqdm=True,
                                lr_scheduler_type="constant", seed=0)
    trainer = DistillationTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor)
    return _timed_train(trainer, args, lambda batch: int(batch["attention_mask"].sum()))


def run_gkd(args) -> dict:
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
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                         processing_class=tokenizer, data_collator=collate)
    return _timed_train(trainer, args, lambda batch: int(batch["attention_mask"].sum()))


def _timed_train(trainer, args, count_tokens) -> dict:
    import torch

    loader = trainer.get_train_dataloader()
    tokens = sum(count_tokens(batch) for _, batch in zip(range(args.steps), loader))
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else _peak_rss_mb()
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "peak_mb": round(peak, 1)}


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
    parser.add_argument("--child", choices=["ours", "gkd", "loss"], help=argparse.SUPPRESS)
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
        result = {"ours": run_ours, "gkd": run_gkd, "loss": run_loss}[args.child](args)
        print(json.dumps(result))
        return result

    common = ["--device", args.device]
    results = {}
    if args.part in ("all", "trainers"):
        shared = common + ["--steps", str(args.steps), "--batch", str(args.batch), "--repeat", str(args.repeat),
                           "--vocab", str(args.vocab), "--chunk", str(args.chunk)]
        results["ours"] = _subprocess(["--child", "ours", *shared])
        results["gkd"] = _subprocess(["--child", "gkd", *shared])
        results["speedup"] = round(results["ours"]["tokens_per_s"] / results["gkd"]["tokens_per_s"], 2)
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
