"""Training data as span documents: natural speech (Stage I), span datasets (Stage II), text replay and mixing
(the frozen-encoder state cache is `spans.EncoderStatesCache`).

Every source becomes rows ``{"id": str, "spans": [{"text": str, "audio": {"bytes", "path"} | None}], "replay":
bool}`` (audio stays encoded; the collator decodes it). Natural speech with one utterance per row, grouped by a
recording/book column and ordered by an order column (LibriHeavy-style), gives documents of
``utterances_per_document`` consecutive utterances; a span dataset written by ``salad-synth`` is the same
thing with ``group_column="doc_id"``, ``order_column="span_index"`` and whole documents.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Iterable, Iterator

from spans import as_encoded_audio

__all__ = ["iter_utterance_documents", "load_speech_documents", "load_replay_documents",
           "documents_to_dataset", "mix_sources", "build_training_dataset"]


def _features():
    from datasets import Features, List, Value

    return Features({
        "id": Value("string"),
        "spans": List({"text": Value("string"), "audio": {"bytes": Value("binary"), "path": Value("string")}}),
        "replay": Value("bool"),
    })


def _rows(source, split: str, config: str | None, streaming: bool, audio_column: str | None):
    import datasets

    if not isinstance(source, (str, os.PathLike)):
        ds = source
    elif os.path.isfile(source):
        kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}.get(
            os.path.splitext(str(source))[1])
        if kind is None:
            raise ValueError(f"unsupported data file {source} (parquet, JSON/JSONL or CSV)")
        ds = datasets.load_dataset(kind, data_files=str(source), split="train", streaming=streaming)
    else:
        ds = datasets.load_dataset(str(source), config, split=split, streaming=streaming)
    if audio_column and getattr(ds, "features", None) and audio_column in ds.features:
        if isinstance(ds.features[audio_column], datasets.Audio):
            ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    return ds


def iter_utterance_documents(rows: Iterable[dict], text_column: str = "text", audio_column: str = "audio",
                             group_column: str | None = None, order_column: str | None = None,
                             utterances_per_document: int | None = 8, max_documents: int | None = None,
                             id_prefix: str = "") -> Iterator[dict]:
    """Consecutive utterances of one group -> span documents (audio left encoded).

    Rows of one group must be contiguous (as in LibriHeavy sorted by book, or any span dataset); within a group
    they are sorted by ``order_column``. ``utterances_per_document=None`` keeps a whole group as one document.
    """
    if utterances_per_document is not None and utterances_per_document < 1:
        raise ValueError("utterances_per_document must be >= 1 or None")
    documents = _grouped_documents(rows, text_column, audio_column, group_column, order_column,
                                   utterances_per_document, id_prefix)
    return itertools.islice(documents, max_documents) if max_documents else documents


def _grouped_documents(rows, text_column, audio_column, group_column, order_column, utterances_per_document,
                       id_prefix) -> Iterator[dict]:
    seen: set = set()
    group_id, group_rows = None, []

    def flush():
        ordered = sorted(group_rows, key=lambda r: r[order_column]) if order_column else group_rows
        size = utterances_per_document or len(ordered)
        for start in range(0, len(ordered), size):
            part = ordered[start:start + size]
            spans = [{"text": str(r[text_column]).strip(), "audio": as_encoded_audio(r.get(audio_column))}
                     for r in part]
            spans = [s for s in spans if s["text"]]
            if spans:
                suffix = f"-{start // size}" if size < len(ordered) else ""
                yield {"id": f"{id_prefix}{group_id}{suffix}", "spans": spans, "replay": False}

    for index, row in enumerate(rows):
        for column in (text_column,) + tuple(c for c in (group_column, order_column) if c):
            if column not in row:
                raise ValueError(f"row {index} has no column {column!r} (columns: {sorted(row)})")
        key = str(row[group_column]) if group_column else str(index)
        if key != group_id:
            if group_id is not None:
                yield from flush()
            if group_column and key in seen:
                raise ValueError(f"rows of group {key!r} are not contiguous (row {index}); sort by {group_column!r}")
            seen.add(key)
            group_id, group_rows = key, []
        group_rows.append(row)
    if group_id is not None:
        yield from flush()


def content_stamp(source) -> str:
    """Names, sizes and nanosecond mtimes of a local file or of every file under a local folder ("" otherwise)."""
    if not isinstance(source, (str, os.PathLike)) or not os.path.exists(source):
        return ""
    files = [str(source)] if os.path.isfile(source) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(source) for name in names)
    digest = hashlib.sha256()
    for path in files:
        stat = os.stat(path)
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def documents_to_dataset(generator_fn, streaming: bool, source=None):
    """A ``datasets`` (Iterable)Dataset of documents from a generator function.

    ``datasets`` caches a generator's output under a hash of the function and its arguments, so the content stamp
    of a local ``source`` is passed along: a file or folder rewritten in place (a new Stage II selection under the
    same path) is read again instead of served from the previous run's cache."""
    import datasets

    cls = datasets.IterableDataset if streaming else datasets.Dataset
    return cls.from_generator(generator_fn, features=_features(), gen_kwargs={"content": content_stamp(source)})


def load_speech_documents(source, split: str = "train", config: str | None = None, streaming: bool = False,
                          text_column: str = "text", audio_column: str = "audio", group_column: str | None = None,
                          order_column: str | None = None, utterances_per_document: int | None = 8,
                          max_documents: int | None = None):
    """A natural-speech or span dataset (local path, Hub id or ``datasets`` object) as span documents."""
    def generate(content):
        rows = _rows(source, split, config, streaming, audio_column)
        yield from iter_utterance_documents(rows, text_column, audio_column, group_column, order_column,
                                            utterances_per_document, max_documents)
    return documents_to_dataset(generate, streaming, source)


def load_replay_documents(source, split: str = "train", text_column: str = "text", streaming: bool = False,
                          max_documents: int | None = None, config: str | None = None):
    """Text-only replay documents (teacher input == student input)."""
    def generate(content):
        for index, row in enumerate(_rows(source, split, config, streaming, None)):
            if max_documents and index >= max_documents:
                return
            if text_column not in row:
                raise ValueError(f"replay row {index} has no column {text_column!r}")
            text = str(row[text_column]).strip()
            if text:
                yield {"id": f"replay-{index}", "spans": [{"text": text, "audio": None}], "replay": True}
    return documents_to_dataset(generate, streaming, source)


def mix_sources(speech_sources: list, replay=None, text_replay_ratio: float = 1 / 3, seed: int = 0):
    """Interleave speech sources (equal shares) and the replay source (``text_replay_ratio``)."""
    import datasets

    sources = list(speech_sources)
    if not sources and replay is None:
        raise ValueError("no training data: give speech_datasets, span_datasets, replay_dataset or tiny_documents")
    probabilities = [1.0 / len(sources)] * len(sources) if sources else []
    if replay is not None and text_replay_ratio > 0:
        probabilities = [p * (1 - text_replay_ratio) for p in probabilities] + [text_replay_ratio]
        sources.append(replay)
    if len(sources) == 1:
        return sources[0]
    return datasets.interleave_datasets(sources, probabilities=probabilities, seed=seed,
                                        stopping_strategy="all_exhausted")


def build_training_dataset(data_args, text_replay_ratio: float, seed: int = 0):
    """Training documents from ``DataArguments``: speech sources + span sets + replay, mixed."""
    speech = []
    for source in data_args.speech_datasets or []:
        speech.append(load_speech_documents(
            source, data_args.speech_split, data_args.speech_config, data_args.streaming, data_args.text_column,
            data_args.audio_column, data_args.group_column, data_args.order_column,
            data_args.utterances_per_document, data_args.max_documents))
    for source in data_args.span_datasets or []:
        speech.append(load_speech_documents(
            source, data_args.speech_split, None, data_args.streaming, "text", "audio", "doc_id", "span_index",
            None, data_args.max_documents))
    if data_args.tiny_documents:
        from .tiny import tiny_documents

        docs = tiny_documents(data_args.tiny_documents, seed=seed)
        rows = [{"id": d["id"], "replay": False,
                 "spans": [{"text": s["text"], "audio": as_encoded_audio(s["audio"])} for s in d["spans"]]}
                for d in docs]
        speech.append(documents_to_dataset(lambda content: iter(rows), streaming=False))
    replay = None
    if data_args.replay_dataset:
        replay = load_replay_documents(data_args.replay_dataset, data_args.replay_split,
                                       data_args.replay_text_column, data_args.streaming, data_args.max_documents,
                                       data_args.replay_config)
    return mix_sources(speech, replay, text_replay_ratio if replay is not None else 0.0, seed)
