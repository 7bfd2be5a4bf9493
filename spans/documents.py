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

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Audio, Features, Sequence, Value

from modeling_salad import SAMPLING_RATE

from .audio import decode_audio
from .files import atomic_write_bytes


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


def write_parquet(rows: list[dict], path: str | os.PathLike, features: Features) -> Path:
    """Write rows atomically to a parquet file whose schema metadata carries the `datasets` features."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema), buffer)
    return atomic_write_bytes(path, buffer.getvalue())


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
                        audio_column: str = "audio", voices=None) -> list[dict]:
    """Span documents from a span dataset (folder, parquet/JSONL file, Hub id, datasets.Dataset), from natural
    speech rows (set group_column/order_column), from a list of documents, or from a plain list of texts.

    A plain list of texts gives one-span documents whose whole text is spoken by `voices` (anything with
    `synthesize(key, text) -> (array, sampling_rate, ...)`, such as `datasets_scripts.tts.VoicePool("piper")`;
    None keeps them as text-only spans); document i has id str(i). Audio is decoded to 16 kHz mono.
    """
    if isinstance(source, (list, tuple)):
        if all(isinstance(item, str) for item in source):
            return _documents_from_texts(list(source), voices)
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


def _documents_from_texts(texts: list[str], voices) -> list[dict]:
    if voices is not None and not callable(getattr(voices, "synthesize", None)):
        raise ValueError(f"voices must have a synthesize(key, text) method (e.g. datasets_scripts.tts.VoicePool), "
                         f"got {type(voices).__name__}")
    documents = []
    for index, text in enumerate(texts):
        audio = None
        if voices is not None:
            array, rate = voices.synthesize(str(index), text)[:2]
            audio = decode_audio({"array": array, "sampling_rate": rate})
        documents.append({"id": str(index), "spans": [{"text": text, "audio": audio}]})
    return documents
