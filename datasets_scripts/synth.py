"""Row-level synthesis: input text rows -> span-dataset rows (or spoken-benchmark rows) with audio.

Three modes:
  utterance  one row per input, the whole text spoken (span_index 0)
  spans      the input is a document; `split_into_spans` makes alternating speech/text spans, speech spans are
             synthesized, text spans keep audio null (rows id = "<doc_id>-<span_index:03d>")
  benchmark  a multiple-choice item; the question (and context) are spoken, the choices stay text
Rows whose text cannot be spoken are skipped with a reason (utterance/benchmark) or, inside a document, the span
stays a text span. `synthesize_rows` is the importable entry (the active-selection step reuses it).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm

from modeling_salad import SAMPLING_RATE
from spans import SPEECH, encode_audio, split_into_spans

from .tts import TTSBackendUnavailableError, UnspeakableTextError, VoicePool, stable_hash

MODES = ("utterance", "spans", "benchmark")
MC_FIELDS = ("id", "question", "choices", "answer", "context")


def _pool_args(pool: VoicePool) -> dict:
    return {"specs": str(pool), "seed": pool.seed, **pool.settings()}


_WORKER_POOL: VoicePool | None = None


def _init_worker(pool_args: dict) -> None:
    global _WORKER_POOL
    _WORKER_POOL = VoicePool(pool_args.pop("specs"), validate=False, **pool_args)


def _speak(pool: VoicePool, clip_id: str, voice_key: str, text: str) -> dict:
    """Synthesize one clip (with the pool's augmentation); returns a dict with audio (array), voice and the
    variation drawn for `voice_key`, or the skip reason."""
    start = time.perf_counter()
    try:
        audio, _, backend, voice = pool.synthesize(voice_key, text, clip_id=clip_id)
    except UnspeakableTextError as err:
        return {"id": clip_id, "skip": f"unspeakable:{err.reason}", "seconds": time.perf_counter() - start}
    except (TTSBackendUnavailableError, ValueError):
        raise
    except RuntimeError as err:  # an engine failed on this text (timeout, crash): skip the row, keep going
        return {"id": clip_id, "skip": f"tts_failed:{str(err)[:120]}", "seconds": time.perf_counter() - start}
    return {"id": clip_id, "array": audio, "backend": backend, "voice": voice or "",
            "variation": pool.variation(voice_key).as_dict(), "seconds": time.perf_counter() - start}


def build_rows(pool: VoicePool, item: dict, mode: str, seed: int, source: str,
               extra_columns: tuple = ()) -> dict:
    """Synthesize one input row. Returns {"rows": [...], "skip": reason|None, "seconds", "kept_as_text"}.
    Audio stays a numpy array here (`audio_array`); encoding happens after the optional CER check."""
    item_id = str(item["id"])
    extras = {k: item.get(k) for k in extra_columns}
    if mode == "utterance":
        clip = _speak(pool, item_id, item_id, item["text"])
        if "skip" in clip:
            return {"rows": [], "skip": clip["skip"], "seconds": clip["seconds"], "kept_as_text": 0}
        row = {"id": item_id, "doc_id": item_id, "span_index": 0, "text": item["text"], "audio_array": clip["array"],
               "backend": clip["backend"], "voice": clip["voice"], "variation": clip["variation"], "cer": None,
               "source": source, **extras}
        return {"rows": [row], "skip": None, "seconds": clip["seconds"], "kept_as_text": 0}
    if mode == "spans":
        try:
            spans = split_into_spans(item["text"], seed=stable_hash("spans", seed, item_id))
        except ValueError:
            return {"rows": [], "skip": "unspeakable:empty", "seconds": 0.0, "kept_as_text": 0}
        rows, seconds, kept_as_text = [], 0.0, 0
        for index, span in enumerate(spans):
            row = {"id": f"{item_id}-{index:03d}", "doc_id": item_id, "span_index": index, "text": span["text"],
                   "audio_array": None, "backend": None, "voice": None, "cer": None, "source": source, **extras}
            if span["kind"] == SPEECH:
                clip = _speak(pool, row["id"], item_id, span["text"])  # one voice per document
                seconds += clip["seconds"]
                if "skip" in clip:
                    kept_as_text += 1
                else:
                    row.update(audio_array=clip["array"], backend=clip["backend"], voice=clip["voice"],
                               variation=clip["variation"])
            rows.append(row)
        return {"rows": rows, "skip": None, "seconds": seconds, "kept_as_text": kept_as_text}
    if mode == "benchmark":
        question = _speak(pool, item_id, item_id, item["question"])
        if "skip" in question:
            return {"rows": [], "skip": question["skip"], "seconds": question["seconds"], "kept_as_text": 0}
        seconds, context_audio = question["seconds"], None
        if item.get("context"):
            context = _speak(pool, item_id + "/context", item_id, item["context"])
            seconds += context["seconds"]
            if "skip" in context:
                return {"rows": [], "skip": "context_" + context["skip"], "seconds": seconds, "kept_as_text": 0}
            context_audio = context["array"]
        metadata = {k: v for k, v in item.items() if k not in MC_FIELDS and k != "audio"}
        row = {"id": item_id, "question": item["question"], "choices": [str(c) for c in item["choices"]],
               "answer": int(item["answer"]), "context": item.get("context"), "text": item["question"],
               "audio_array": question["array"], "context_audio_array": context_audio,
               "backend": question["backend"], "voice": question["voice"], "variation": question["variation"],
               "cer": None, "source": source,
               "metadata": json.dumps(metadata, default=str, sort_keys=True)}
        return {"rows": [row], "skip": None, "seconds": seconds, "kept_as_text": 0}
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _worker_build(args):
    return build_rows(_WORKER_POOL, *args)


def finalize_rows(rows: list[dict], *, mode: str = "utterance", transcriber=None, max_cer: float | None = None,
                  audio_format: str = "flac") -> tuple[list[dict], list[dict], int]:
    """CER-check spoken rows (when a transcriber is given), apply `max_cer` (a row over it is dropped; a speech
    span over it stays in its document as a text span), encode audio.
    Returns (rows, skipped [{"id", "reason"}], number of spans turned into text)."""
    spoken = [r for r in rows if r.get("audio_array") is not None]
    if transcriber is not None and spoken:
        for row, cer in zip(spoken, transcriber.cer([r["audio_array"] for r in spoken], [r["text"] for r in spoken])):
            row["cer"] = round(float(cer), 4)
    kept, skipped, kept_as_text = [], [], 0
    for row in rows:
        if max_cer is not None and row.get("cer") is not None and row["cer"] > max_cer:
            if mode == "spans":
                row.update(audio_array=None, backend=None, voice=None)
                kept_as_text += 1
            else:
                skipped.append({"id": row["id"], "reason": "cer_above_max"})
                continue
        array = row.pop("audio_array", None)
        row["audio"] = None if array is None else encode_audio(array, SAMPLING_RATE, name=row["id"],
                                                              audio_format=audio_format)
        row["duration"] = None if array is None else round(len(array) / SAMPLING_RATE, 3)
        if mode == "benchmark":
            context = row.pop("context_audio_array")
            row["context_audio"] = None if context is None else encode_audio(
                context, SAMPLING_RATE, name=row["id"] + "-context", audio_format=audio_format)
            if context is not None:
                row["duration"] = round(row["duration"] + len(context) / SAMPLING_RATE, 3)
            row.pop("text", None)
        kept.append(row)
    return kept, skipped, kept_as_text


def synthesize_rows(rows: list[dict], pool: VoicePool, *, mode: str = "utterance", seed: int = 0,
                    num_proc: int = 1, transcriber=None, max_cer: float | None = None, source: str = "",
                    audio_format: str = "flac", extra_columns: tuple = (), progress: bool = True,
                    executor=None) -> dict:
    """Synthesize input rows ({"id", "text", ...} or MC items in benchmark mode) with the voice pool.

    Returns {"rows": output rows with encoded audio (and "variation": the row's `Variation.as_dict()`, a key the
    parquet schema leaves out), "skipped": [{"id", "reason"}], "synth_seconds": summed
    per-clip synthesis time, "audio_seconds", "kept_as_text": speech spans left as text}. Output rows are in
    input order. num_proc > 1 synthesizes in worker processes (spawned, so onnxruntime is not forked).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    jobs = [(item, mode, seed, source, tuple(extra_columns)) for item in rows]
    bar = tqdm(total=len(jobs), desc="synthesize", unit="row", disable=not progress, leave=False)
    results = []
    if num_proc > 1 or executor is not None:
        own = executor is None
        executor = executor or make_executor(pool, num_proc)
        try:
            for result in executor.map(_worker_build, jobs, chunksize=1):
                results.append(result)
                bar.update()
        finally:
            if own:
                executor.shutdown()
    else:
        for job in jobs:
            results.append(build_rows(pool, *job))
            bar.update()
    bar.close()
    out_rows, skipped, kept_as_text = [], [], 0
    for item, result in zip(rows, results):
        if result["skip"]:
            skipped.append({"id": str(item["id"]), "reason": result["skip"]})
        out_rows += result["rows"]
        kept_as_text += result["kept_as_text"]
    final, cer_skipped, cer_kept_as_text = finalize_rows(out_rows, mode=mode, transcriber=transcriber,
                                                          max_cer=max_cer, audio_format=audio_format)
    return {"rows": final, "skipped": skipped + cer_skipped, "synth_seconds": float(sum(r["seconds"] for r in results)),
            "audio_seconds": float(sum(r["duration"] or 0.0 for r in final)),
            "kept_as_text": kept_as_text + cer_kept_as_text}


def make_executor(pool: VoicePool, num_proc: int) -> ProcessPoolExecutor:
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc}")
    return ProcessPoolExecutor(max_workers=num_proc, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(_pool_args(pool),))
