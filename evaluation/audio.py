"""Spoken questions for evaluation: recorded audio from a spoken benchmark folder, or TTS on the fly (cached on
disk by (backend, voice, text) hash), and a frozen-encoder cache so repeated evaluations skip the encoder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .prompts import question_text

SAMPLING_RATE = 16000
CONTEXT_PAUSE_S = 0.3


def default_tts_cache_dir() -> Path:
    from datasets_scripts.cache import cache_root

    return cache_root() / "eval-tts"


def _load_audio(audio) -> np.ndarray:
    from modeling_salad.processing_salad import load_audio

    return load_audio(audio)


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
        backend, voice = self.pool.pick(str(item["id"]))
        text = question_text(item)
        return "tts:" + hashlib.sha256(f"{backend}\x1f{voice}\x1f{text}".encode()).hexdigest()[:32]

    def clip(self, item: dict) -> np.ndarray:
        key = self.clip_key(item)
        if key in self._memory:
            return self._memory[key]
        if item.get("audio") is not None:
            audio = _load_audio(item["audio"])
            if item.get("context_audio") is not None:  # spoken context, a short pause, then the question
                pause = np.zeros(int(CONTEXT_PAUSE_S * SAMPLING_RATE), dtype=np.float32)
                audio = np.concatenate([_load_audio(item["context_audio"]), pause, audio])
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
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy.tmp", delete=False) as handle:
            np.save(handle, audio)
        os.replace(handle.name, path)
        return audio


class EncoderCache:
    """Frozen-encoder outputs per clip, so re-evaluating checkpoints that share the encoder skips it.

    Keys are clip keys (`SpokenQuestions.clip_key`); values are the model inputs for `MultipleChoiceScorer.score_speech`.
    Only valid while the audio tower is frozen (SALAD's default); `clear()` it otherwise.
    """

    def __init__(self):
        self._entries: dict[str, dict] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    @torch.no_grad()
    def get(self, key: str, audio: np.ndarray, model, processor) -> dict:
        if key not in self._entries:
            self._entries[key] = encode_clip(audio, model, processor)
        return self._entries[key]


@torch.no_grad()
def encode_clip(audio: np.ndarray, model, processor) -> dict:
    """Run the frozen encoder on one clip; returns score_speech's `audio_inputs` (kept on CPU)."""
    features = processor.extract_audio_features([audio])
    device = next(model.parameters()).device
    states, mask = model.encode_audio(
        features["input_features"].to(device), features["input_features_mask"].to(device)
    )
    return {
        "audio_encoder_states": states.cpu(),
        "audio_encoder_mask": mask.cpu(),
        "num_placeholders": int(processor.num_audio_tokens(len(audio))),
    }
