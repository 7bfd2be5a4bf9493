"""Resumable, shardable writer of synthetic speech datasets (a Hub-ready folder).

Folder layout:
  README.md                                      dataset card (YAML front matter + provenance + statistics)
  data/train-<shard>-of-<shards>-<chunk>.parquet  one part per chunk of `chunk_size` input rows
  .salad-synth/config.json                       the run's settings; a restart must match them
  .salad-synth/shard-<i>-of-<n>/chunk-<k>.json   the done index: rows written and rows skipped (with reasons)
A chunk counts as done only when its record exists; the record is written (atomically) after its parquet part,
so a killed run restarted with the same command redoes at most the chunk it was in and ends with exactly one
row per input id. A finished shard is never overwritten silently: pass overwrite=True to redo it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from .span_docs import benchmark_features, span_features, write_parquet_atomic
from .cards import reason_key
from .synth import make_executor, synthesize_rows

STATE_DIR = ".salad-synth"
# settings that may differ between restarts/shards without changing the output
_VOLATILE = {"num_proc", "shard_index", "overwrite", "progress"}


def _write_json_atomic(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def shard_bounds(num_rows: int, num_shards: int, shard_index: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"Need 0 <= shard_index < num_shards, got shard_index={shard_index}, num_shards={num_shards}")
    return num_rows * shard_index // num_shards, num_rows * (shard_index + 1) // num_shards


def rows_digest(rows: list[dict]) -> str:
    """sha256 of the input rows' content (canonical JSON): a resume is keyed by it, not by the input's path."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _refuse_changed_input(output_dir: Path, stored: dict, wanted: dict) -> None:
    if "input_sha256" in stored and stored["input_sha256"] != wanted["input_sha256"]:
        raise ValueError(f"Output folder {output_dir} holds a run of a different input (its content hash changed "
                         f"since the run started: {stored['input_sha256'][:12]} -> {wanted['input_sha256'][:12]}); "
                         "resuming would mix old and new rows. Use another folder or --overwrite to replace it")


def _prepare_folder(output_dir: Path, config: dict, shard_dir: Path, shard_tag: str, overwrite: bool) -> None:
    state = output_dir / STATE_DIR
    config_path = state / "config.json"
    if output_dir.exists() and any(output_dir.iterdir()) and not config_path.exists():
        ours = {"data", "README.md", STATE_DIR}
        if not overwrite or set(p.name for p in output_dir.iterdir()) - ours:
            raise ValueError(f"Output folder {output_dir} is not empty and holds no salad-synth run; choose an "
                             "empty folder" + ("" if overwrite else " (or pass --overwrite to replace data/ and "
                                                                    "README.md)"))
    if config_path.exists():
        stored = {k: v for k, v in json.loads(config_path.read_text()).items() if k not in _VOLATILE}
        wanted = {k: v for k, v in config.items() if k not in _VOLATILE}
        if stored != wanted:
            if not overwrite:
                _refuse_changed_input(output_dir, stored, wanted)
                diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
                raise ValueError(f"Output folder {output_dir} holds a run with different settings ({', '.join(diff)});"
                                 " use another folder or --overwrite to replace it")
            for name in ("data", STATE_DIR, "README.md"):  # a different run: replace everything of ours
                target = output_dir / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        elif (shard_dir / "done.json").exists():
            if not overwrite:
                raise ValueError(f"Output folder {output_dir} already holds the finished run (shard {shard_tag}); "
                                 "pass --overwrite to synthesize it again")
            shutil.rmtree(shard_dir)
            for part in glob.glob(str(output_dir / "data" / f"train-{shard_tag}-*.parquet")):
                os.remove(part)
    _write_json_atomic(config_path, config)


def write_span_dataset(rows: list[dict], output_dir, pool, *, mode: str = "utterance", seed: int = 0,
                       num_shards: int = 1, shard_index: int = 0, num_proc: int = 1, chunk_size: int = 256,
                       overwrite: bool = False, transcriber=None, max_cer: float | None = None, source: str = "",
                       run_config: dict | None = None, card_context: dict | None = None,
                       extra_features: dict | None = None, audio_format: str = "flac",
                       progress: bool = True) -> dict:
    """Synthesize `rows` (this shard's contiguous slice of them) into `output_dir`, resuming finished chunks.

    rows: input rows {"id", "text", ...} (MC items in benchmark mode) in a fixed order; ids must be unique.
    extra_features: {column: datasets feature} copied from input rows into output rows (e.g. Stage II fields).
    Returns a summary dict (rows, audio_seconds, wall_seconds, x_real_time, skipped reasons, chunks resumed).
    """
    ids = [str(r["id"]) for r in rows]
    if len(set(ids)) != len(ids):
        duplicates = [i for i, n in Counter(ids).items() if n > 1][:5]
        raise ValueError(f"Input ids must be unique; duplicated: {duplicates}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    output_dir = Path(output_dir)
    start, end = shard_bounds(len(rows), num_shards, shard_index)
    shard_tag = f"{shard_index:05d}-of-{num_shards:05d}"
    shard_dir = output_dir / STATE_DIR / f"shard-{shard_tag}"
    config = {**(run_config or {}), "mode": mode, "seed": seed, "num_shards": num_shards, "chunk_size": chunk_size,
              "tts": str(pool), "speed": pool.speed, "speed_jitter": pool.speed_jitter,
              "pitch_jitter": pool.pitch_jitter, "max_cer": max_cer, "audio_format": audio_format,
              "num_input_rows": len(rows), "extra_features": sorted(extra_features or {})}
    _prepare_folder(output_dir, {**config, "input_sha256": rows_digest(rows)}, shard_dir, shard_tag, overwrite)
    features = benchmark_features() if mode == "benchmark" else span_features(extra_features)

    shard_rows = rows[start:end]
    chunks = [shard_rows[i:i + chunk_size] for i in range(0, len(shard_rows), chunk_size)]
    done = {k for k in range(len(chunks)) if (shard_dir / f"chunk-{k:05d}.json").exists()}
    wall_start, synth_seconds, audio_seconds, written = time.perf_counter(), 0.0, 0.0, 0
    skipped: Counter = Counter()
    bar = tqdm(total=len(shard_rows), desc=f"salad-synth shard {shard_tag}", unit="row", disable=not progress,
               initial=sum(len(chunks[k]) for k in done))
    executor = make_executor(pool, num_proc) if num_proc > 1 else None
    try:
        for k, chunk in enumerate(chunks):
            if k in done:
                continue
            result = synthesize_rows(chunk, pool, mode=mode, seed=seed, transcriber=transcriber, max_cer=max_cer,
                                     source=source, audio_format=audio_format, extra_columns=tuple(extra_features or {}),
                                     progress=False, executor=executor)
            part = output_dir / "data" / f"train-{shard_tag}-{k:05d}.parquet"
            write_parquet_atomic(result["rows"], part, features)
            record = {"chunk": k, "input_ids": [str(r["id"]) for r in chunk], "rows": len(result["rows"]),
                      "audio_seconds": result["audio_seconds"], "synth_seconds": result["synth_seconds"],
                      "skipped": result["skipped"], "kept_as_text": result["kept_as_text"], "part": part.name,
                      "voices": dict(Counter(f"{r['backend']}:{r['voice']}" for r in result["rows"] if r["backend"])),
                      "cer": [r["cer"] for r in result["rows"] if r.get("cer") is not None]}
            _write_json_atomic(shard_dir / f"chunk-{k:05d}.json", record)
            synth_seconds += result["synth_seconds"]
            audio_seconds += result["audio_seconds"]
            written += len(result["rows"])
            skipped.update(reason_key(s["reason"]) for s in result["skipped"])
            bar.update(len(chunk))
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown()
    wall = time.perf_counter() - wall_start
    _write_json_atomic(shard_dir / "done.json", {"chunks": len(chunks), "input_rows": len(shard_rows)})
    from .cards import write_dataset_card

    totals = write_dataset_card(output_dir, features, card_context or {}, config)
    return {"output_dir": str(output_dir), "shard": shard_tag, "input_rows": len(shard_rows),
            "rows_written_now": written, "chunks_resumed": len(done), "audio_seconds_now": round(audio_seconds, 2),
            "synth_seconds_now": round(synth_seconds, 2), "wall_seconds": round(wall, 2),
            "x_real_time": round(audio_seconds / wall, 2) if wall > 0 and audio_seconds else None,
            "skipped_now": dict(skipped), "totals": totals}
