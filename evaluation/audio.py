"""Spoken questions for evaluation: recorded audio from a spoken benchmark folder, or TTS on the fly (cached on
disk by (backend, voice, text) hash), and the model inputs of a clip through the encoder-state cache
(`spans.EncoderStatesCache`), so repeated evaluations skip the encoder."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from modeling_salad import SAMPLING_RATE, load_audio
from spans import EncoderStatesCache, atomic_write_bytes, audio_token_count, cache_root

from .prompts import question_text

CONTEXT_PAUSE_S = 0.3


def default_tts_cache_dir() -> Path:
    return cache_root() / "eval-tts"


class SpokenQuestions:
    """Gives the 16 kHz clip of each item's spoken question (and context).

    Items that carry `audio` (rows of a `salad-synth --benchmark` folder) use it, preceded by their
    `context_audio` when they have one (one clip = context then question, like the TTS text); the others are synthesized with
    the voice that `voice_pool` picks for the item id (`datasets_scripts.tts.VoicePool`, e.g. "piper" or
    "piper,flite:slt"), cached as .npy under `cache_dir`.
    """

    def __init__(self, voices: str | list[str] | None = "piper", cache_dir: str | os.PathLike | None = None):
        self.voices = voices
        self._pool = None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_tts_cache_dir()
        self._memory: dict[str, np.ndarray] = {}

    @property
    def pool(self):
        if self._pool is None:
            if not self.voices:
                raise ValueError("Items have no recorded audio and no TTS voice was given (--tts BACKEND[:VOICE]).")
            from datasets_scripts.tts import VoicePool

            self._pool = VoicePool(self.voices)
        return self._pool

    def clip_key(self, item: dict) -> str:
        """Identity of the clip: the recording's item id, or (backend, voice, text) for TTS."""
        if item.get("audio") is not None:
            return f"recorded:{item['id']}"
        from datasets_scripts.tts.registry import cache_revision

        backend, voice = self.pool.pick(str(item["id"]))
        revision = cache_revision(backend)
        parts = [backend, voice, question_text(item)] + ([revision] if revision else [])
        return "tts:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

    def clip(self, item: dict) -> np.ndarray:
        key = self.clip_key(item)
        if key in self._memory:
            return self._memory[key]
        if item.get("audio") is not None:
            audio = load_audio(item["audio"])
            if item.get("context_audio") is not None:  # spoken context, a short pause, then the question
                pause = np.zeros(int(CONTEXT_PAUSE_S * SAMPLING_RATE), dtype=np.float32)
                audio = np.concatenate([load_audio(item["context_audio"]), pause, audio])
        else:
            audio = self._synthesize_cached(item, key)
        self._memory[key] = audio
        return audio

    def _synthesize_cached(self, item: dict, key: str) -> np.ndarray:
        path = self.cache_dir / f"{key.split(':', 1)[1]}.npy"
        if path.exists():
            return np.load(path)
        from datasets_scripts.tts import get_backend

        backend_name, voice = self.pool.pick(str(item["id"]))
        audio, sampling_rate = get_backend(backend_name).synthesize(question_text(item), voice)
        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"TTS backend {backend_name} returned {sampling_rate} Hz, expected {SAMPLING_RATE}.")
        audio = np.asarray(audio, dtype=np.float32)
        buffer = io.BytesIO()
        np.save(buffer, audio)
        atomic_write_bytes(path, buffer.getvalue())
        return audio


def speech_inputs(cache: EncoderStatesCache, wave: np.ndarray, model, processor) -> dict:
    """`MultipleChoiceScorer.score_speech`'s `audio_inputs` for one clip: its frozen-encoder states (from `cache`,
    or computed and stored there) and its placeholder count."""
    clip = cache.encode(model, processor, wave)
    return {**clip.model_inputs(), "num_placeholders": audio_token_count(processor, len(wave))}
