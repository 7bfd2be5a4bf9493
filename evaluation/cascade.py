"""ASR cascade baseline: Whisper (`WhisperForConditionalGeneration.generate`) transcribes the spoken question, the
base text LLM scores the transcript like a text question."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from datasets_scripts.asr_check import WhisperTranscriber


class WhisperASR(WhisperTranscriber):
    """The cascade's ASR: `datasets_scripts.asr_check.WhisperTranscriber` (greedy, 30 s windows joined) with
    transcripts memoized per clip key, since the ASR never changes between evaluations.

    Args:
        model: a `WhisperForConditionalGeneration`; processor: its `WhisperProcessor`.
        max_new_tokens: decoding budget per window.
        store: a `ScoreStore` keeping transcripts on disk, keyed by the ASR's weights and decoding settings and the
            clip's samples.
    """

    def __init__(self, model, processor, max_new_tokens: int = 128, batch_size: int = 8, store=None):
        super().__init__(model=model, processor=processor, batch_size=batch_size, max_new_tokens=max_new_tokens)
        self._cache: dict[str, str] = {}
        self.store = store

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> "WhisperASR":
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        path = str(path)
        if not os.path.isdir(path):
            raise ValueError(f"ASR model folder not found: {path!r} (pass --asr-model, e.g. the Whisper tiny.en "
                             "folder of `salad-assets`).")
        return cls(WhisperForConditionalGeneration.from_pretrained(path), WhisperProcessor.from_pretrained(path), **kwargs)

    def transcribe(self, clips: Sequence[np.ndarray], keys: Sequence[str] | None = None) -> list[str]:
        """Transcripts of `clips`; with `keys`, results are memoized per key."""
        keys = list(keys) if keys is not None else [None] * len(clips)
        if len(keys) != len(clips):
            raise ValueError(f"{len(keys)} keys for {len(clips)} clips.")
        todo = [i for i, key in enumerate(keys) if key is None or key not in self._cache]
        fresh = self._stored_or_transcribed(clips, todo)
        for i, text in fresh.items():
            if keys[i] is not None:
                self._cache[keys[i]] = text
        return [fresh[i] if i in fresh else self._cache[key] for i, key in enumerate(keys)]


    def _stored_or_transcribed(self, clips: Sequence[np.ndarray], todo: list[int]) -> dict[int, str]:
        """{index: transcript} of `clips[i]` for i in `todo`, from the store where it holds them."""
        if self.store is None:
            return dict(zip(todo, super().transcribe([clips[i] for i in todo]))) if todo else {}
        from .score_store import clip_digest, model_identity

        identity = [model_identity(self.model), self.max_new_tokens]
        parts = {i: [*identity, clip_digest(clips[i])] for i in todo}
        found = {i: self.store.get("transcript", parts[i]) for i in todo}
        missing = [i for i in todo if found[i] is None]
        for i, text in zip(missing, super().transcribe([clips[i] for i in missing]) if missing else []):
            self.store.put("transcript", parts[i], text)
            found[i] = text
        return found
