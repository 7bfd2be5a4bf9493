"""Resumable, shardable writer of synthetic speech datasets (a Hub-ready folder).

Folder layout:
  README.md                                      dataset card (YAML front matter + provenance + statistics)
  data/train-<shard>-of-<shards>-<chunk>.parquet  one part per chunk of `chunk_size` input rows
  .salad-synth/config.json                       the run's settings; a restart must match them
  .salad-synth/shard-<i>-of-<n>/chunk-<k>.json   the done index: rows written and rows skipped (with reasons),
                                                 each spoken row's drawn speed/pitch/noise/reverb ("variations")
  .salad-synth/shard-<i>-of-<n>/done.json         every chunk is done (the card counts finished shards by it)
  .salad-synth/shard-<i>-of-<n>/summary.json      the shard's summary, written last: the run is finished
A chunk counts as done only when its record exists; the record is written (atomically) after its parquet part,
so a killed run restarted with the same command redoes at most the chunk it was in and ends with exactly one
row per input id. A finished shard is never overwritten silently: pass overwrite=True to redo it.
`completed_summary` tells a caller whether a folder already holds the finished run of given inputs and settings.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from spans import atomic_write_json, benchmark_features, span_features, write_parquet

from .cards import reason_key
from .synth import make_executor, synthesize_rows

__all__ = ["SynthConfig", "write_span_dataset", "completed_summary", "shard_bounds", "STATE_DIR"]

STATE_DIR = ".salad-synth"
MODES = ("utterance", "spans", "benchmark")
# settings that may differ between restarts/shards without changing the output
_VOLATILE = {"num_proc", "shard_index", "overwrite", "progress"}


@dataclass
class SynthConfig:
    """How `write_span_dataset` synthesizes a folder (the salad-synth flags build one)."""

    mode: str = field(default="utterance", metadata={"help": "utterance (one clip per row), spans (alternating "
                                                             "speech/text spans) or benchmark (MC questions)"})
    seed: int = field(default=0, metadata={"help": "seed of voice assignment and span splitting"})
    num_shards: int = field(default=1, metadata={"help": "the job is split across this many machines"})
    shard_index: int = field(default=0, metadata={"help": "which shard this call writes"})
    num_proc: int = field(default=1, metadata={"help": "worker processes for synthesis"})
    chunk_size: int = field(default=256, metadata={"help": "input rows per parquet part (the resume unit)"})
    overwrite: bool = field(default=False, metadata={"help": "redo a finished (or differently set) run"})
    max_cer: float | None = field(default=None, metadata={"help": "drop clips whose CER exceeds this (needs a "
                                                                  "transcriber)"})
    source: str = field(default="", metadata={"help": "name of the text source recorded in every row"})
    audio_format: str = field(default="flac", metadata={"help": "flac or wav"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    run_config: dict = field(default_factory=dict, metadata={"help": "provenance recorded with the settings "
                                                                     "(input, text_column, cer_model, ...)"})
    card_context: dict = field(default_factory=dict, metadata={"help": "dataset card fields (sources, "
                                                                       "description, selection, tags)"})
    extra_features: dict = field(default_factory=dict, metadata={"help": "{column: datasets feature} copied from "
                                                                         "input rows into output rows"})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.num_proc < 1:
            raise ValueError(f"num_proc must be >= 1, got {self.num_proc}")
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"audio_format must be flac or wav, got {self.audio_format!r}")
        shard_bounds(0, self.num_shards, self.shard_index)

    @property
    def shard_tag(self) -> str:
        return f"{self.shard_index:05d}-of-{self.num_shards:05d}"


def shard_bounds(num_rows: int, num_shards: int, shard_index: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"Need 0 <= shard_index < num_shards, got shard_index={shard_index}, num_shards={num_shards}")
    return num_rows * shard_index // num_shards, num_rows * (shard_index + 1) // num_shards


def _check_ids(rows: list[dict]) -> None:
    ids = [str(r["id"]) for r in rows]
    if len(set(ids)) != len(ids):
        duplicates = [i for i, n in Counter(ids).items() if n > 1][:5]
        raise ValueError(f"Input ids must be unique; duplicated: {duplicates}")


def _run_settings(rows: list[dict], pool, config: SynthConfig) -> dict:
    """Everything that determines the folder's content (stored as .salad-synth/config.json)."""
    return {**config.run_config, "mode": config.mode, "seed": config.seed, "num_shards": config.num_shards,
            "chunk_size": config.chunk_size, "tts": str(pool), **pool.settings(), "max_cer": config.max_cer,
            "audio_format": config.audio_format,
            "num_input_rows": len(rows), "input_sha256": rows_digest(rows),
            "extra_features": sorted(config.extra_features)}


def _stable(settings: dict) -> dict:
    return {k: v for k, v in json.loads(json.dumps(settings, default=str)).items() if k not in _VOLATILE}


def _shard_dir(output_dir: Path, config: SynthConfig) -> Path:
    return output_dir / STATE_DIR / f"shard-{config.shard_tag}"


def completed_summary(rows: list[dict], output_dir, pool, config: SynthConfig | None = None) -> dict | None:
    """The summary `write_span_dataset` returned when it finished this shard, if `output_dir` holds the finished
    run of exactly these rows and settings; None when that run is missing, unfinished or differently set."""
    config = config or SynthConfig()
    output_dir = Path(output_dir)
    config_path, summary_path = output_dir / STATE_DIR / "config.json", _shard_dir(output_dir, config) / "summary.json"
    if not (config_path.is_file() and summary_path.is_file()):
        return None
    if _stable(json.loads(config_path.read_text())) != _stable(_run_settings(rows, pool, config)):
        return None
    return json.loads(summary_path.read_text())


def _clear_ours(output_dir: Path) -> None:
    for name in ("data", STATE_DIR, "README.md"):
        target = output_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


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


def _prepare_folder(output_dir: Path, settings: dict, config: SynthConfig) -> None:
    state, shard_dir, overwrite = output_dir / STATE_DIR, _shard_dir(output_dir, config), config.overwrite
    config_path = state / "config.json"
    if output_dir.exists() and any(output_dir.iterdir()) and not config_path.exists():
        ours = {"data", "README.md", STATE_DIR}
        if not overwrite or set(p.name for p in output_dir.iterdir()) - ours:
            raise ValueError(f"Output folder {output_dir} is not empty and holds no salad-synth run; choose an "
                             "empty folder" + ("" if overwrite else " (or pass --overwrite to replace data/ and "
                                                                    "README.md)"))
    if config_path.exists():
        stored, wanted = _stable(json.loads(config_path.read_text())), _stable(settings)
        if stored != wanted:
            if not overwrite:
                _refuse_changed_input(output_dir, stored, wanted)
                diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
                raise ValueError(f"Output folder {output_dir} holds a run with different settings ({', '.join(diff)});"
                                 " use another folder or --overwrite to replace it")
            _clear_ours(output_dir)  # a different run: replace everything of ours
        elif (shard_dir / "summary.json").exists():
            if not overwrite:
                raise ValueError(f"Output folder {output_dir} already holds the finished run (shard "
                                 f"{config.shard_tag}); pass --overwrite to synthesize it again")
            shutil.rmtree(shard_dir)
            for part in glob.glob(str(output_dir / "data" / f"train-{config.shard_tag}-*.parquet")):
                os.remove(part)
    atomic_write_json(config_path, settings)


def _chunk_record(k: int, chunk: list[dict], result: dict, part: Path) -> dict:
    return {"chunk": k, "input_ids": [str(r["id"]) for r in chunk], "rows": len(result["rows"]),
            "audio_seconds": result["audio_seconds"], "synth_seconds": result["synth_seconds"],
            "skipped": result["skipped"], "kept_as_text": result["kept_as_text"], "part": part.name,
            "voices": dict(Counter(f"{r['backend']}:{r['voice']}" for r in result["rows"] if r["backend"])),
            "cer": [r["cer"] for r in result["rows"] if r.get("cer") is not None],
            "variations": {r["id"]: r.get("variation") for r in result["rows"] if r["backend"]}}


def _write_chunks(chunks, done, output_dir: Path, pool, config: SynthConfig, transcriber, features) -> dict:
    """Synthesize every chunk not in `done`; returns what this call wrote."""
    shard_dir = _shard_dir(output_dir, config)
    now = {"synth_seconds": 0.0, "audio_seconds": 0.0, "rows": 0, "skipped": Counter()}
    bar = tqdm(total=sum(len(c) for c in chunks), desc=f"salad-synth shard {config.shard_tag}", unit="row",
               disable=not config.progress, initial=sum(len(chunks[k]) for k in done))
    executor = make_executor(pool, config.num_proc) if config.num_proc > 1 else None
    try:
        for k, chunk in enumerate(chunks):
            if k in done:
                continue
            result = synthesize_rows(chunk, pool, mode=config.mode, seed=config.seed, transcriber=transcriber,
                                     max_cer=config.max_cer, source=config.source, audio_format=config.audio_format,
                                     extra_columns=tuple(config.extra_features), progress=False, executor=executor)
            part = output_dir / "data" / f"train-{config.shard_tag}-{k:05d}.parquet"
            write_parquet(result["rows"], part, features)
            atomic_write_json(shard_dir / f"chunk-{k:05d}.json", _chunk_record(k, chunk, result, part))
            now["synth_seconds"] += result["synth_seconds"]
            now["audio_seconds"] += result["audio_seconds"]
            now["rows"] += len(result["rows"])
            now["skipped"].update(reason_key(s["reason"]) for s in result["skipped"])
            bar.update(len(chunk))
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown()
    return now


def write_span_dataset(rows: list[dict], output_dir, pool, config: SynthConfig | None = None,
                       transcriber=None) -> dict:
    """Synthesize `rows` (this shard's contiguous slice of them) into `output_dir`, resuming finished chunks.

    rows: input rows {"id", "text", ...} (MC items in benchmark mode) in a fixed order; ids must be unique.
    pool: a `VoicePool`; transcriber: an object with ``.cer(clips, texts)`` (needed for ``config.max_cer``).
    Returns a summary dict (rows, audio_seconds, wall_seconds, x_real_time, skipped reasons, chunks resumed), also
    stored in the shard's done.json (`completed_summary` reads it back).
    """
    config = config or SynthConfig()
    _check_ids(rows)
    output_dir = Path(output_dir)
    settings = _run_settings(rows, pool, config)
    _prepare_folder(output_dir, settings, config)
    features = benchmark_features() if config.mode == "benchmark" else span_features(config.extra_features or None)
    start, end = shard_bounds(len(rows), config.num_shards, config.shard_index)
    shard_rows = rows[start:end]
    chunks = [shard_rows[i:i + config.chunk_size] for i in range(0, len(shard_rows), config.chunk_size)]
    shard_dir = _shard_dir(output_dir, config)
    done = {k for k in range(len(chunks)) if (shard_dir / f"chunk-{k:05d}.json").exists()}
    wall_start = time.perf_counter()
    now = _write_chunks(chunks, done, output_dir, pool, config, transcriber, features)
    wall = time.perf_counter() - wall_start
    atomic_write_json(shard_dir / "done.json", {"chunks": len(chunks), "input_rows": len(shard_rows)})
    from .cards import write_dataset_card

    totals = write_dataset_card(output_dir, features, config.card_context, settings)
    summary = {"output_dir": str(output_dir), "shard": config.shard_tag, "input_rows": len(shard_rows),
               "rows_written_now": now["rows"], "chunks_resumed": len(done),
               "audio_seconds_now": round(now["audio_seconds"], 2), "synth_seconds_now": round(now["synth_seconds"], 2),
               "wall_seconds": round(wall, 2),
               "x_real_time": round(now["audio_seconds"] / wall, 2) if wall > 0 and now["audio_seconds"] else None,
               "skipped_now": dict(now["skipped"]), "totals": totals}
    atomic_write_json(shard_dir / "summary.json", summary)
    return json.loads(json.dumps(summary, default=str))
