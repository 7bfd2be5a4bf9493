"""Active-selection benchmark (CPU or GPU): balanced k-means speed, then a full salad-select run with per-step times.

    .venv/bin/python benchmarks/selection.py kmeans --n 100000 --dim 384 --k 16
    .venv/bin/python benchmarks/selection.py run --output runs/select-bench [--budget-texts 200 ...]

`run` writes <output>/report/report.json whose `timings_seconds` holds the seconds of each step (pool, embed,
cluster, probe, score, target, sample, synthesize); it prints them for benchmarks/RESULTS.md. Without
--checkpoint it scores with an untrained SALAD model built from the demo's embedded parts (`salad-assets`).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def bench_kmeans(n: int, dim: int, k: int, iters: int, device: str | None) -> dict:
    from selection.active_selection import fit_balanced_kmeans

    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(0)), dim=1)
    start = time.perf_counter()
    result = fit_balanced_kmeans(x, k, seed=0, iters=iters, device=device)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    sizes = torch.bincount(result.labels, minlength=k)
    return {"n": n, "dim": dim, "k": k, "iterations": result.iterations, "seconds": round(seconds, 2),
            "seconds_per_iteration": round(seconds / result.iterations, 3),
            "size_min": int(sizes.min()), "size_max": int(sizes.max()),
            "device": str(device or ("cuda" if torch.cuda.is_available() else "cpu"))}


def untrained_checkpoint(folder: str) -> str:
    """An untrained SALAD model from the embedded demo parts, saved once into `folder`."""
    from pathlib import Path

    if not (Path(folder) / "config.json").is_file():
        from modeling_salad import build_salad
        from salad_demo.assets import prepare_assets

        assets = prepare_assets()
        model, processor = build_salad(str(assets["llm"]), str(assets["whisper"]))
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    km = sub.add_parser("kmeans")
    km.add_argument("--n", type=int, default=100000)
    km.add_argument("--dim", type=int, default=384)
    km.add_argument("--k", type=int, default=16)
    km.add_argument("--iters", type=int, default=25)
    km.add_argument("--device", default=None)
    run = sub.add_parser("run")
    run.add_argument("--output", default="runs/select-bench")
    run.add_argument("--budget-texts", type=int, default=200)
    run.add_argument("--num-clusters", type=int, default=16)
    run.add_argument("--tts", default="piper,flite:slt")
    run.add_argument("--probe-size", type=int, default=2)
    run.add_argument("--pool-max-per-domain", type=int, default=20)
    run.add_argument("--checkpoint", default=None, help="SALAD checkpoint folder (default: an untrained one "
                     "from the embedded SmolLM2 + Whisper tiny.en, saved under <output>/untrained-salad)")
    args = parser.parse_args(argv)
    if args.command == "kmeans":
        print(json.dumps(bench_kmeans(args.n, args.dim, args.k, args.iters, args.device)))
        return
    from selection.cli import main as select_main

    checkpoint = args.checkpoint or untrained_checkpoint(f"{args.output}/untrained-salad")
    from salad_demo.assets import prepare_assets

    whisper = str(prepare_assets()["whisper"])

    code = select_main(["--output_dir", args.output, "--budget_texts", str(args.budget_texts),
                        "--num_clusters", str(args.num_clusters), "--tts", args.tts,
                        "--probe_size", str(args.probe_size), "--pool_max_per_domain", str(args.pool_max_per_domain),
                        "--checkpoint", checkpoint, "--cer_model", whisper, "--gamma", "5"])
    if code:
        raise SystemExit(code)
    with open(f"{args.output}/report/report.json") as fh:
        report = json.load(fh)
    print(json.dumps({"pool": report["pool_size"], "domains": report["pool_domains"],
                      "selected": report["selected_texts"], "timings_seconds": report["timings_seconds"],
                      "synthesis": report["synthesis"]}))


if __name__ == "__main__":
    main()
