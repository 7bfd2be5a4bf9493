"""ASR cascade baseline: Whisper (`WhisperForConditionalGeneration.generate`) transcribes the spoken question, the
base text LLM scores the transcript like a text question."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from .audio import SAMPLING_RATE

WINDOW_SAMPLES = 30 * SAMPLING_RATE  # Whisper's input window


class WhisperASR:
    """Greedy Whisper transcription of 16 kHz clips; clips over 30 s are cut into 30 s windows and joined.

    Args:
        model: a `WhisperForConditionalGeneration`.
        processor: its `WhisperProcessor` (feature extractor + tokenizer).
        max_new_tokens: decoding budget per window.
    """

    def __init__(self, model, processor, max_new_tokens: int = 128, batch_size: int = 8):
        self.model = model.eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._cache: dict[str, str] = {}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> "WhisperASR":
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        path = str(path)
        if not os.path.isdir(path):
            raise ValueError(f"ASR model folder not found: {path!r} (pass --asr-model, e.g. the Whisper tiny.en "
                             "folder of `salad-assets`).")
        return cls(WhisperForConditionalGeneration.from_pretrained(path), WhisperProcessor.from_pretrained(path), **kwargs)

    @torch.no_grad()
    def transcribe(self, clips: Sequence[np.ndarray], keys: Sequence[str] | None = None) -> list[str]:
        """Transcripts of `clips`; with `keys`, results are memoized per key (the ASR never changes)."""
        keys = list(keys) if keys is not None else [None] * len(clips)
        if len(keys) != len(clips):
            raise ValueError(f"{len(keys)} keys for {len(clips)} clips.")
        todo = [i for i, key in enumerate(keys) if key is None or key not in self._cache]
        windows, owners = [], []
        for i in todo:
            clip = np.asarray(clips[i], dtype=np.float32)
            if clip.ndim != 1 or clip.size == 0:
                raise ValueError(f"Clip {i} must be a non-empty mono array, got shape {clip.shape}.")
            for start in range(0, clip.size, WINDOW_SAMPLES):
                windows.append(clip[start : start + WINDOW_SAMPLES])
                owners.append(i)
        texts = self._decode_windows(windows)
        joined: dict[int, list[str]] = {i: [] for i in todo}
        for owner, text in zip(owners, texts):
            joined[owner].append(text.strip())
        out = []
        for i, key in enumerate(keys):
            if i in joined:
                text = " ".join(t for t in joined[i] if t)
                if key is not None:
                    self._cache[key] = text
            else:
                text = self._cache[key]
            out.append(text)
        return out

    def _decode_windows(self, windows: list[np.ndarray]) -> list[str]:
        device = next(self.model.parameters()).device
        texts: list[str] = []
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start : start + self.batch_size]
            features = self.processor.feature_extractor(
                batch, sampling_rate=SAMPLING_RATE, return_tensors="pt"
            ).input_features.to(device, self.model.dtype)
            ids = self.model.generate(features, max_new_tokens=self.max_new_tokens, do_sample=False)
            texts.extend(self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return texts
