"""Audio cells of a span dataset: encoding clips into `datasets.Audio` cells and decoding cells back to 16 kHz.

Decoding goes through `modeling_salad.load_audio`, so a clip reads the same in training, in evaluation and in the
model's own processor (mono, float32, resampled with soxr, with a clear error for empty or corrupt audio).
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import numpy as np

from modeling_salad import SAMPLING_RATE, load_audio

AUDIO_FORMATS = ("flac", "wav")


def encode_audio(array: np.ndarray, sampling_rate: int = SAMPLING_RATE, *, name: str = "clip",
                 audio_format: str = "flac") -> dict:
    """{"bytes", "path"} for an Audio column: 16-bit FLAC (default) or WAV bytes; `path` only names the format."""
    import soundfile as sf

    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(array, np.float32), sampling_rate, format=audio_format.upper(), subtype="PCM_16")
    return {"bytes": buffer.getvalue(), "path": f"{name}.{audio_format}"}


def decode_audio(value) -> dict | None:
    """An Audio cell (bytes/path dict, array dict, file path or None) -> {"array": float32 mono 16 kHz,
    "sampling_rate"} or None."""
    if value is None:
        return None
    if not isinstance(value, (dict, str, os.PathLike)):
        raise ValueError(f"Unsupported audio value of type {type(value).__name__}")
    name = value.get("path") if isinstance(value, dict) else os.fspath(value)
    return {"array": load_audio(value, name=name or "audio"), "sampling_rate": SAMPLING_RATE}


def as_encoded_audio(audio: Any) -> dict | None:
    """Any audio cell -> {"bytes", "path"}: encoded cells pass through, arrays are encoded as 16-bit FLAC."""
    if audio is None:
        return None
    if isinstance(audio, dict) and audio.get("array") is None and (
            audio.get("bytes") is not None or audio.get("path") is not None):
        return {"bytes": audio.get("bytes"), "path": audio.get("path")}
    return encode_audio(load_audio(audio, sampling_rate=SAMPLING_RATE), SAMPLING_RATE)


def clip_digest(wave: np.ndarray) -> str:
    """sha256 of a decoded 16 kHz clip's samples: the same clip stored as FLAC, WAV or an array has one digest."""
    samples = np.ascontiguousarray(np.asarray(wave, dtype=np.float32))
    return hashlib.sha256(samples.tobytes()).hexdigest()
