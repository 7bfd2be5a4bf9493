"""Span datasets on disk (one row per span) and the loader that turns them back into span documents.

Row schema: id, doc_id, span_index, text, audio (datasets.Audio 16 kHz; null for a text span), backend, voice,
duration, cer, source — rows of one document contiguous and ordered by span_index. Natural speech with one
utterance per row (grouped by book/speaker/recording) has the same shape, so `load_span_documents` reads both.
Parquet files are written with pyarrow and carry the `datasets` features in their schema metadata, so
`datasets.load_dataset(folder)` returns `audio` as an Audio column (decoding it needs torchcodec; without it use
`ds.cast_column("audio", Audio(decode=False))` and soundfile, as this module does).
"""

from __future__ import annotations

import glob
import io
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
import soxr
from datasets import Audio, Features, Sequence, Value

SAMPLING_RATE = 16000


def span_features(extra: dict | None = None) -> Features:
    """Features of a span dataset; `extra` adds columns (e.g. Stage II selection fields)."""
    features = {
        "id": Value("string"), "doc_id": Value("string"), "span_index": Value("int32"), "text": Value("string"),
        "audio": Audio(sampling_rate=SAMPLING_RATE), "backend": Value("string"), "voice": Value("string"),
        "duration": Value("float32"), "cer": Value("float32"), "source": Value("string"),
    }
    return Features({**features, **(extra or {})})


def benchmark_features() -> Features:
    """Features of a spoken multiple-choice benchmark: the question (and context) spoken, choices as text."""
    return Features({
        "id": Value("string"), "question": Value("string"), "choices": Sequence(Value("string")),
        "answer": Value("int32"), "context": Value("string"), "audio": Audio(sampling_rate=SAMPLING_RATE),
        "context_audio": Audio(sampling_rate=SAMPLING_RATE), "backend": Value("string"), "voice": Value("string"),
        "duration": Value("float32"), "cer": Value("float32"), "source": Value("string"),
        "metadata": Value("string"),
    })


def encode_audio(array: np.ndarray, sampling_rate: int = SAMPLING_RATE, *, name: str = "clip",
                 audio_format: str = "flac") -> dict:
    """{"bytes", "path"} for an Audio column: 16-bit FLAC (default) or WAV bytes; `path` only names the format."""
    if audio_format not in ("flac", "wav"):
        raise ValueError(f"audio_format must be 'flac' or 'wav', got {audio_format!r}")
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(array, np.float32), sampling_rate, format=audio_format.upper(), subtype="PCM_16")
    return {"bytes": buffer.getvalue(), "path": f"{name}.{audio_format}"}


def decode_audio(value, target_rate: int = SAMPLING_RATE) -> dict | None:
    """An Audio cell (bytes/path dict, array dict or None) -> {"array": float32 mono, "sampling_rate"} or None."""
    if value is None:
        return None
    if isinstance(value, dict) and value.get("array") is not None:
        array, rate = np.asarray(value["array"], np.float32), value.get("sampling_rate")
        if rate is None:
            raise ValueError("Audio dict with an 'array' needs a 'sampling_rate'")
    elif isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        try:
            array, rate = sf.read(source, dtype="float32", always_2d=False)
        except Exception as err:  # soundfile raises its own error types for corrupt/missing files
            raise ValueError(f"Cannot decode audio {value.get('path')!r}: {err}") from err
    elif isinstance(value, (str, os.PathLike)):
        return decode_audio({"path": str(value)}, target_rate)
    else:
        raise ValueError(f"Unsupported audio value of type {type(value).__name__}")
    if array.ndim == 2:
        array = array.mean(axis=1)
    if rate != target_rate and array.size:
        array = soxr.resample(array, rate, target_rate, quality="HQ").astype(np.float32)
    return {"array": array.astype(np.float32), "sampling_rate": target_rate}


def write_parquet_atomic(rows: list[dict], path: str | os.PathLike, features: Features) -> None:
    """Write rows to a parquet file whose schema metadata carries the `datasets` features; tmp + os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=features.arrow_schema)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _rows_from(source, split: str) -> Iterable[dict]:
    """Rows of a span dataset given as a folder/file path, a Hub id, a datasets.Dataset or a list of dicts."""
    import datasets

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix)
            if kind is None:
                raise ValueError(f"Unsupported span dataset file {path} (use parquet or JSONL)")
            source = datasets.load_dataset(kind, data_files=str(path), split="train")
        else:
            source = load_folder_or_hub(str(source), split)
    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ValueError(f"Split {split!r} not found; available: {list(source)}")
        source = source[split]
    if isinstance(source, datasets.Dataset):
        for name, feature in source.features.items():
            if isinstance(feature, Audio) and feature.decode:
                source = source.cast_column(name, Audio(decode=False))
    return source


def load_folder_or_hub(source: str, split: str = "train"):
    """A salad-synth folder (its data/<split>-*.parquet parts, read with the parquet builder, whose cache key
    follows the files' mtimes) or anything else `datasets.load_dataset` reads (Hub id, other folders)."""
    import datasets

    parts = sorted(glob.glob(os.path.join(source, "data", f"{split}-*.parquet")))
    if parts:
        return datasets.load_dataset("parquet", data_files=parts, split="train")
    return datasets.load_dataset(source, split=split)


def iter_span_documents(source, *, split: str = "train", group_column: str = "doc_id",
                        order_column: str | None = "span_index", text_column: str = "text",
                        audio_column: str = "audio") -> Iterator[dict]:
    """Yield {"id", "spans": [{"text", "audio": {"array", "sampling_rate"} | None}]} per document.

    Rows of one document must be contiguous (they are in every span dataset this package writes and in natural
    speech sorted by book); within a document spans are ordered by `order_column` (None keeps row order).
    """
    seen: set[str] = set()
    current_id, current_rows = None, []

    def flush():
        rows = sorted(current_rows, key=lambda r: r[order_column]) if order_column else current_rows
        spans = [{"text": r[text_column], "audio": decode_audio(r.get(audio_column))} for r in rows]
        return {"id": current_id, "spans": spans}

    for index, row in enumerate(_rows_from(source, split)):
        for column in (group_column, text_column) + ((order_column,) if order_column else ()):
            if column not in row:
                raise ValueError(f"Span dataset row {index} has no column {column!r} (columns: {sorted(row)})")
        doc_id = str(row[group_column])
        if doc_id != current_id:
            if current_id is not None:
                yield flush()
            if doc_id in seen:
                raise ValueError(f"Rows of document {doc_id!r} are not contiguous (row {index}); sort the dataset "
                                 f"by {group_column!r} first")
            seen.add(doc_id)
            current_id, current_rows = doc_id, []
        current_rows.append(row)
    if current_id is not None:
        yield flush()


def load_span_documents(source, *, split: str = "train", group_column: str = "doc_id",
                        order_column: str | None = "span_index", text_column: str = "text",
                        audio_column: str = "audio", tts="piper") -> list[dict]:
    """Span documents from a span dataset (folder, parquet/JSONL file, Hub id, datasets.Dataset), from natural
    speech rows (set group_column/order_column), from a list of documents, or from a plain list of texts.

    A plain list of texts gives one-span documents whose whole text is spoken, synthesized with the voice pool
    `tts` (a spec like "piper,flite:slt" or a VoicePool; None keeps them as text-only spans); document i has id
    str(i). Audio is decoded with soundfile and resampled to 16 kHz.
    """
    if isinstance(source, (list, tuple)):
        if all(isinstance(item, str) for item in source):
            return _documents_from_texts(list(source), tts)
        if all(isinstance(item, dict) and "spans" in item for item in source):
            return [_check_document(doc) for doc in source]
        raise ValueError("A list source must hold only texts (str) or only documents ({'id', 'spans'})")
    return list(iter_span_documents(source, split=split, group_column=group_column, order_column=order_column,
                                    text_column=text_column, audio_column=audio_column))


def _check_document(doc: dict) -> dict:
    if not isinstance(doc.get("spans"), list) or not doc["spans"]:
        raise ValueError(f"Document {doc.get('id')!r} has no spans")
    spans = []
    for span in doc["spans"]:
        if not isinstance(span, dict) or not isinstance(span.get("text"), str):
            raise ValueError(f"Document {doc.get('id')!r}: each span needs a 'text' string, got {span!r:.80}")
        spans.append({"text": span["text"], "audio": decode_audio(span.get("audio"))})
    return {"id": str(doc.get("id", "")), "spans": spans}


def _documents_from_texts(texts: list[str], tts) -> list[dict]:
    from .tts import VoicePool

    pool = VoicePool(tts) if isinstance(tts, (str, list)) and tts else tts
    documents = []
    for index, text in enumerate(texts):
        audio = None
        if pool is not None:
            array, rate, _, _ = pool.synthesize(str(index), text)
            audio = {"array": array, "sampling_rate": rate}
        documents.append({"id": str(index), "spans": [{"text": text, "audio": audio}]})
    return documents
