"""TTS throughput (x real time) per backend, and the Whisper CER of synthetic speech, into benchmarks/RESULTS.md.

    python benchmarks/tts_throughput.py throughput [--rows 24]       # one core, then --num-proc 2
    python benchmarks/tts_throughput.py cer [--rows 200] [--whisper PATH]

Texts: short English BIG-bench questions (general_knowledge, known_unknowns, misconceptions) read from an
extracted BIG-bench tree (.cache/bigbench/<task>/task.json) or the bigbench==1.0.0 sdist in .cache/downloads.
x real time = seconds of audio produced / wall seconds (higher is faster). Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
TASKS = ("general_knowledge", "known_unknowns", "misconceptions")
THROUGHPUT_VOICES = ("piper", "espeak-ng:en-us", "flite:slt", "festival:kal_diphone")
CER_VOICES = ("piper", "festival:kal_diphone", "flite:slt")


def bigbench_questions(limit: int) -> list[dict]:
    from datasets_scripts.corpora import bigbench_task_path

    rows = []
    for task in TASKS:
        data = json.loads(bigbench_task_path(task).read_text())
        for i, example in enumerate(data["examples"]):
            text = " ".join(example["input"].split())
            if "target_scores" in example and len(text.split()) <= 25:
                rows.append({"id": f"{task}-{i}", "text": text})
    return rows[:limit]


def write_section(title: str, body: str) -> None:
    """Replace (or append) the `## title` section of RESULTS.md, leaving other sections alone; atomic."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    from spans import atomic_write_text

    atomic_write_text(RESULTS, text)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load {os.getloadavg()[0]:.1f}"


def run_throughput(args) -> None:
    from datasets_scripts.synth import make_executor, synthesize_rows
    from datasets_scripts.tts import VoicePool

    rows = bigbench_questions(args.rows)
    warmup = [{"id": f"warmup-{i}", "text": "Warm up the voice."} for i in range(4)]
    lines = ["| voice | processes | rows | audio s | wall s | x real time |", "|---|---|---|---|---|---|"]
    all_cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    for spec in args.voices:
        pool = VoicePool(spec)
        for num_proc in (1, 2):
            if all_cores:  # 1 process: pinned to one core (engine subprocesses inherit it)
                os.sched_setaffinity(0, {min(all_cores)} if num_proc == 1 else all_cores)
            executor = make_executor(pool, num_proc) if num_proc > 1 else None
            try:  # session loads and worker start-up stay out of the timing
                synthesize_rows(warmup, pool, num_proc=num_proc, executor=executor, progress=False)
                start = time.perf_counter()
                result = synthesize_rows(rows, pool, num_proc=num_proc, executor=executor, progress=False)
                wall = time.perf_counter() - start
            finally:
                if executor is not None:
                    executor.shutdown()
            audio = result["audio_seconds"]
            lines.append(f"| `{spec}` | {num_proc} | {len(result['rows'])} | {audio:.1f} | {wall:.1f} | "
                         f"{audio / wall:.1f} |")
            print(lines[-1], flush=True)
    if all_cores:
        os.sched_setaffinity(0, all_cores)
    body = (f"Command: `{args.command_line}`\n\n{len(rows)} short BIG-bench questions per run through "
            "`synthesize_rows` (synthesis + 16 kHz resampling + FLAC encoding, the salad-synth path), after a "
            "warm-up (voice/session load and worker start-up not timed). 1 process = pinned to one core; "
            "2 processes = `--num-proc 2`. Machine: "
            f"{machine()} (2 cores shared with other jobs, so numbers are noisy and 2 processes cannot double).\n\n"
            + "\n".join(lines))
    write_section("TTS throughput (CPU)", body)


def _cer_folder(work: Path, spec: str) -> Path:
    return work / ("cer-" + re.sub(r"[^A-Za-z0-9]+", "-", spec))


def _cer_argv(source: Path, out: Path, spec: str, whisper: str | None) -> list[str]:
    if whisper is None:
        from salad_demo.assets import prepare_assets

        whisper = prepare_assets()["whisper"]
    return ["--input", str(source), "--output", str(out), "--tts", spec, "--cer-check", str(whisper),
            "--overwrite", "--quiet", "--source-license", "apache-2.0"]


def run_cer(args) -> None:
    """Synthesize + CER-check each voice (unless --report-only), then rebuild the RESULTS.md section from every
    finished voice folder, so voices may run as separate processes."""
    import numpy as np
    import pyarrow.parquet as pq

    from datasets_scripts.synth_cli import main as synth_main

    rows = bigbench_questions(args.rows)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    source = work / "bigbench_questions.jsonl"
    if not source.exists():
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if not args.report_only:
        for spec in args.voices:
            if synth_main(_cer_argv(source, _cer_folder(work, spec), spec, args.whisper)) != 0:
                sys.exit(f"salad-synth failed for {spec}")
    lines = ["| voice | rows | mean CER | median CER | rows with CER = 0 | rows with CER > 0.3 | command |",
             "|---|---|---|---|---|---|---|"]
    for spec in dict.fromkeys(list(CER_VOICES) + list(args.voices)):
        out = _cer_folder(work, spec)
        if not list(out.glob(".salad-synth/shard-*/done.json")):
            continue
        cers = np.array([c for part in sorted((out / "data").glob("*.parquet"))
                         for c in pq.read_table(part, columns=["cer"]).column("cer").to_pylist()])
        argv = _cer_argv(source, out, spec, args.whisper)
        command = "salad-synth " + " ".join(shlex.quote(a) for a in argv).replace(str(REPO) + "/", "")
        lines.append(f"| `{spec}` | {len(cers)} | {cers.mean():.3f} | {np.median(cers):.3f} | "
                     f"{(cers == 0).mean():.0%} | {(cers > 0.3).mean():.0%} | `{command}` |")
        print(lines[-1], flush=True)
    body = (f"Command: `python benchmarks/tts_throughput.py cer` (voices may also run one by one with "
            f"`--voices SPEC`; the table is rebuilt from every finished voice folder)\n\n{len(rows)} short English "
            f"BIG-bench questions ({', '.join(TASKS)}; Apache-2.0) synthesized with `salad-synth`, each clip "
            "transcribed by the embedded Whisper tiny.en (greedy) and scored with jiwer CER after Whisper's English "
            "normalizer. Goal: mean CER <= 0.10.\n\n" + "\n".join(lines))
    write_section("Synthetic speech CER", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("throughput", "cer"))
    parser.add_argument("--rows", type=int, default=None, help="texts per run (throughput 24, cer 200)")
    parser.add_argument("--voices", nargs="+", default=None)
    parser.add_argument("--whisper", default=None, help="Whisper model folder (default: the embedded tiny.en)")
    parser.add_argument("--report-only", action="store_true", help="cer: only rebuild the table")
    parser.add_argument("--workdir", default=str(REPO / ".cache" / "tts-cer"))
    args = parser.parse_args()
    args.command_line = "python benchmarks/tts_throughput.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    os.environ.setdefault("SALAD_TTS_THREADS", "1")
    if args.what == "throughput":
        args.rows, args.voices = args.rows or 24, args.voices or list(THROUGHPUT_VOICES)
        run_throughput(args)
    else:
        args.rows, args.voices = args.rows or 200, args.voices or list(CER_VOICES)
        run_cer(args)


if __name__ == "__main__":
    main()
