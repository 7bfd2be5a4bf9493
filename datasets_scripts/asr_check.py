"""ASR round-trip check of synthetic speech: transcribe each clip with Whisper, score the character error rate.

CER = jiwer.cer after Whisper's English text normalizer (lower case, punctuation removed, numbers and spellings
standardized) on both the TTS input text and the transcript. The model is any local
WhisperForConditionalGeneration folder, given explicitly (`salad-assets` prints the path of a converted tiny.en).
"""

from __future__ import annotations

import functools
import json
import os
from collections import defaultdict

import numpy as np

from modeling_salad import SAMPLING_RATE


@functools.lru_cache(maxsize=1)
def _english_normalizer(model_path: str | None = None):
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    spelling = {}
    if model_path and os.path.exists(os.path.join(model_path, "normalizer.json")):
        with open(os.path.join(model_path, "normalizer.json"), encoding="utf-8") as f:
            spelling = json.load(f)
    return EnglishTextNormalizer(spelling)


def normalize_text(text: str, model_path: str | None = None) -> str:
    return " ".join(_english_normalizer(model_path)(text or "").split())


def character_error_rate(reference: str, hypothesis: str, model_path: str | None = None) -> float:
    """CER of `hypothesis` against `reference` after normalization (1.0 when the transcript is empty)."""
    import jiwer

    ref, hyp = normalize_text(reference, model_path), normalize_text(hypothesis, model_path)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    return float(jiwer.cer(ref, hyp))


class WhisperTranscriber:
    """Batched greedy Whisper transcription of 16 kHz clips on CPU or GPU; clips over 30 s are cut into 30 s windows
    whose transcripts are joined (the project's one Whisper ASR: CER checks, the evaluation's cascade)."""

    WINDOW_SAMPLES = 30 * SAMPLING_RATE

    def __init__(self, model_path: str | None = None, device: str | None = None, batch_size: int = 8,
                 max_new_tokens: int = 128, model=None, processor=None):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        if model is not None:  # an already loaded model + processor
            self.model, self.processor, self.model_path = model.eval(), processor, getattr(model, "name_or_path", None)
            self.device = next(model.parameters()).device
            return
        if model_path is None:
            raise ValueError("WhisperTranscriber needs a Whisper model: pass model_path (a local "
                             "WhisperForConditionalGeneration folder) or model and processor.")
        self.model_path = str(model_path)
        if not os.path.isdir(self.model_path):
            raise ValueError(f"Whisper model folder not found: {self.model_path!r}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = WhisperProcessor.from_pretrained(self.model_path)
        self.model = WhisperForConditionalGeneration.from_pretrained(self.model_path).to(self.device).eval()

    def transcribe(self, clips: list[np.ndarray], sampling_rate: int = SAMPLING_RATE) -> list[str]:
        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"WhisperTranscriber expects 16 kHz clips, got {sampling_rate} Hz")
        windows, owners = [], []
        for i, clip in enumerate(clips):
            clip = np.asarray(clip, dtype=np.float32)
            if clip.ndim != 1 or clip.size == 0:
                raise ValueError(f"Clip {i} must be a non-empty mono array, got shape {clip.shape}.")
            for start in range(0, clip.size, self.WINDOW_SAMPLES):
                windows.append(clip[start:start + self.WINDOW_SAMPLES])
                owners.append(i)
        pieces: list[list[str]] = [[] for _ in clips]
        for owner, text in zip(owners, self._decode_windows(windows)):
            pieces[owner].append(text.strip())
        return [" ".join(t for t in texts if t) for texts in pieces]

    def _decode_windows(self, windows: list[np.ndarray]) -> list[str]:
        import torch

        # Whisper's generate counts `max_length` after its forced start tokens, so it is the budget of new tokens;
        # passing `max_new_tokens` instead clashes with the checkpoint's saved max_length (448) on every call.
        texts: list[str] = []
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start:start + self.batch_size]
            features = self.processor.feature_extractor(batch, sampling_rate=SAMPLING_RATE, return_tensors="pt",
                                                        return_attention_mask=True)
            with torch.inference_mode():
                ids = self.model.generate(features.input_features.to(self.device, self.model.dtype),
                                          attention_mask=features.attention_mask.to(self.device),
                                          max_length=self.max_new_tokens, do_sample=False)
            texts += self.processor.batch_decode(ids, skip_special_tokens=True)
        return texts

    def cer(self, clips: list[np.ndarray], references: list[str]) -> list[float]:
        hypotheses = self.transcribe(clips)
        return [character_error_rate(r, h, self.model_path) for r, h in zip(references, hypotheses)]


def cer_by_group(rows, group_key: str, transcriber: WhisperTranscriber | None = None,
                 text_key: str = "text", audio_key: str = "audio") -> dict:
    """Mean CER per group over rows {group_key, text, audio ({"array"} or decodable cell)}; rows that already
    carry a numeric "cer" are not re-transcribed. Returns {group: {"cer": mean, "count": n}}."""
    from spans import decode_audio

    per_group: dict = defaultdict(list)
    pending = []
    for row in rows:
        if group_key not in row:
            raise ValueError(f"Row has no group column {group_key!r} (columns: {sorted(row)})")
        if row.get("cer") is not None:
            per_group[row[group_key]].append(float(row["cer"]))
        elif row.get(audio_key) is not None:
            pending.append(row)
    if pending:
        if transcriber is None:
            raise ValueError(f"{len(pending)} rows carry no 'cer'; pass a transcriber (WhisperTranscriber(model_path)) "
                             "to transcribe them.")
        clips = [decode_audio(r[audio_key])["array"] for r in pending]
        for row, cer in zip(pending, transcriber.cer(clips, [r[text_key] for r in pending])):
            per_group[row[group_key]].append(cer)
    return {group: {"cer": float(np.mean(v)), "count": len(v)} for group, v in per_group.items()}
