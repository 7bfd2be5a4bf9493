"""Dataset cards for synthetic speech folders: statistics from the done index, rendered from
model_cards/dataset_card.md.j2 (YAML front matter: license, task_categories, language, configs, dataset_info)."""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from spans import atomic_write_text

TEMPLATE_NAME = "dataset_card.md.j2"


def _feature_yaml(name: str, feature) -> dict:
    from datasets import Audio, Sequence, Value

    if isinstance(feature, Audio):
        return {"name": name, "dtype": {"audio": {"sampling_rate": feature.sampling_rate}}}
    if isinstance(feature, Sequence) or isinstance(feature, list):
        inner = feature.feature if isinstance(feature, Sequence) else feature[0]
        return {"name": name, "sequence": inner.dtype}
    if isinstance(feature, Value):
        return {"name": name, "dtype": feature.dtype}
    return {"name": name, "dtype": "string"}


def reason_key(reason: str) -> str:
    """Group skip reasons: "unspeakable:empty" stays, "tts_failed:<message>" -> "tts_failed"."""
    parts = reason.split(":")
    return ":".join(parts[:2]) if parts[0].endswith("unspeakable") else parts[0]


def collect_statistics(output_dir) -> dict:
    """Totals over every chunk record of every shard in the folder."""
    records = [json.loads(Path(p).read_text()) for p in sorted(glob.glob(
        os.path.join(output_dir, ".salad-synth", "shard-*", "chunk-*.json")))]
    shards = sorted(Path(p).parent.name[len("shard-"):] for p in glob.glob(
        os.path.join(output_dir, ".salad-synth", "shard-*", "done.json")))
    voices, skipped = Counter(), Counter()
    cers = []
    for record in records:
        voices.update(record["voices"])
        skipped.update(reason_key(s["reason"]) for s in record["skipped"])
        cers += record.get("cer", [])
    return {"rows": sum(r["rows"] for r in records), "input_rows": sum(len(r["input_ids"]) for r in records),
            "audio_hours": round(sum(r["audio_seconds"] for r in records) / 3600, 4),
            "synth_hours": round(sum(r["synth_seconds"] for r in records) / 3600, 4),
            "skipped": dict(skipped), "kept_as_text": sum(r.get("kept_as_text", 0) for r in records),
            "voices": dict(voices.most_common()), "mean_cer": round(float(np.mean(cers)), 4) if cers else None,
            "cer_clips": len(cers), "finished_shards": shards,
            "num_bytes": sum(os.path.getsize(p) for p in glob.glob(os.path.join(output_dir, "data", "train-*.parquet")))}


def render_dataset_card(context: dict) -> str:
    from model_cards import render

    return render(TEMPLATE_NAME, **context)


def write_dataset_card(output_dir, features, card_context: dict, run_config: dict) -> dict:
    """Render README.md for the folder (atomically) and return the statistics it reports."""
    stats = collect_statistics(output_dir)
    sources = card_context.get("sources") or [{"name": run_config.get("input", "unknown"), "license": "unknown"}]
    licenses = sorted({s.get("license") or "unknown" for s in sources})
    header = {
        "license": licenses[0] if len(licenses) == 1 else "other",
        "language": card_context.get("language", ["en"]),
        "task_categories": card_context.get("task_categories",
                                            ["automatic-speech-recognition", "text-to-speech", "audio-text-to-text"]),
        "tags": ["synthetic-speech", "salad", "tts"] + card_context.get("tags", []),
        "pretty_name": card_context.get("pretty_name", Path(output_dir).resolve().name),
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        # sizes also keep `datasets`' local cache apart: its key for a folder with YAML configs is derived from
        # this card metadata, not from the files' mtimes, so two same-named folders could otherwise collide
        "dataset_info": {"features": [_feature_yaml(n, f) for n, f in features.items()],
                         "splits": [{"name": "train", "num_bytes": stats["num_bytes"],
                                     "num_examples": stats["rows"]}],
                         "download_size": stats["num_bytes"], "dataset_size": stats["num_bytes"]},
    }
    context = {"front_matter": yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(),
               "title": card_context.get("title", header["pretty_name"]), "stats": stats, "sources": sources,
               "config": {"input": None, "text_column": None, "cer_model": None, **run_config}, "selection": card_context.get("selection"),
               "description": card_context.get("description", ""), "licenses": licenses,
               "columns": list(features), "mode": run_config.get("mode", "utterance")}
    text = render_dataset_card(context)
    atomic_write_text(Path(output_dir) / "README.md", text)
    return stats
