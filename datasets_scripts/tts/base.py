"""The TTS backend interface, text checks shared by every backend, and audio helpers.

Every backend turns text into 16 kHz float32 mono speech. Text that cannot be spoken (empty, only punctuation,
a non-Latin script for an English voice) raises `UnspeakableTextError` with a short machine-readable `reason`,
so batch jobs can skip the row and count why. Long text is split into sentences, synthesized piece by piece and
concatenated, so a 2,000-word document never hits an engine's input limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from abc import ABC, abstractmethod

import numpy as np
import soundfile as sf
import soxr

from modeling_salad import SAMPLING_RATE as TARGET_SAMPLING_RATE
# Engines handle a few sentences at a time well; longer inputs are split (Piper/Kokoro degrade past ~500 phonemes).
MAX_CHUNK_CHARS = 300
PAUSE_BETWEEN_CHUNKS_S = 0.12


class UnspeakableTextError(ValueError):
    """The text cannot be spoken; `reason` is a short code ("empty", "no_letters", "non_latin_script")."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class TTSBackendUnavailableError(RuntimeError):
    """The engine (binary, package or weight file) this backend needs is not installed on this machine."""


def check_speakable(text, *, latin_only: bool = True) -> str:
    """Return the text with whitespace normalized, or raise `UnspeakableTextError` naming the problem."""
    if not isinstance(text, str):
        raise UnspeakableTextError("not_text", f"TTS input must be a str, got {type(text).__name__}")
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    if not text:
        raise UnspeakableTextError("empty", "TTS input is empty or only whitespace")
    letters = [c for c in text if c.isalpha()]
    if not letters and not any(c.isdigit() for c in text):
        raise UnspeakableTextError("no_letters", f"TTS input has no letters or digits to speak: {text[:40]!r}")
    if latin_only and letters:
        non_latin = sum(1 for c in letters if "LATIN" not in unicodedata.name(c, ""))
        if non_latin / len(letters) > 0.5:
            raise UnspeakableTextError(
                "non_latin_script",
                f"TTS input is mostly non-Latin script ({non_latin}/{len(letters)} letters), which this English "
                f"voice cannot read: {text[:40]!r}",
            )
    return text


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def split_for_synthesis(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Split text into pieces of at most `max_chars` at sentence boundaries (words when a sentence is longer)."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words, current = sentence.split(), ""
        for word in words:
            if current and len(current) + 1 + len(word) > max_chars:
                pieces.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current:
            pieces.append(current)
    merged: list[str] = []  # re-join short sentences so each piece is as long as allowed
    for piece in pieces:
        if merged and len(merged[-1]) + 1 + len(piece) <= max_chars:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def to_16k_mono(audio: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Float32 mono at 16 kHz (soxr high quality), clipped to [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    audio = audio.reshape(-1)
    if sampling_rate != TARGET_SAMPLING_RATE and audio.size:
        audio = soxr.resample(audio, sampling_rate, TARGET_SAMPLING_RATE, quality="HQ").astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def require_binary(name: str, package_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TTSBackendUnavailableError(
            f"The `{name}` program is not on PATH; install it (Debian/Ubuntu: apt-get install {package_hint})."
        )
    return path


def run_engine(cmd: list[str], *, timeout: float, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a TTS engine as a subprocess (GPL engines stay out of this process) with a timeout and clear errors."""
    try:
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{os.path.basename(cmd[0])} did not finish within {timeout:.0f} s") from err
    if result.returncode != 0:
        raise RuntimeError(
            f"{os.path.basename(cmd[0])} failed (exit {result.returncode}): {result.stderr.strip()[:300]}"
        )
    return result


def read_wav(path: str) -> tuple[np.ndarray, int]:
    audio, sampling_rate = sf.read(path, dtype="float32", always_2d=False)
    return audio, sampling_rate


def shift_pitch(audio: np.ndarray, sampling_rate: int, semitones: float, timeout: float = 60) -> np.ndarray:
    """Shift pitch without changing duration through sox's `pitch` effect (for engines with no pitch control)."""
    if not semitones:
        return audio
    sox = require_binary("sox", "sox")
    with tempfile.TemporaryDirectory(prefix="salad-pitch-") as tmp:
        src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
        sf.write(src, audio, sampling_rate, subtype="FLOAT")
        run_engine([sox, src, dst, "pitch", f"{semitones * 100:.0f}"], timeout=timeout)
        shifted, _ = read_wav(dst)
    return shifted.astype(np.float32)


class TTSBackend(ABC):
    """One TTS engine. Subclasses implement `_synthesize_piece`, `voices` and set `name` and `default_voice`."""

    name: str = ""
    default_voice: str | None = None
    supports_native_pitch: bool = False
    # part of the key of cached clips: a backend whose output for the same text and voice changed sets a new one
    cache_revision: str = ""

    @abstractmethod
    def voices(self) -> list[str]:
        """Names accepted as `voice` by `synthesize`."""

    @abstractmethod
    def _synthesize_piece(self, text: str, voice: str, speed: float, pitch: float) -> tuple[np.ndarray, int]:
        """Synthesize one short piece of checked text; return (audio, its native sampling rate)."""

    def resolve_voice(self, voice: str | None) -> str:
        voice = voice or self.default_voice
        if voice not in self.voices():
            known = ", ".join(self.voices()[:30])
            raise ValueError(f"Unknown {self.name} voice {voice!r}; available: {known}")
        return voice

    def latin_only(self, voice: str) -> bool:
        return True

    def synthesize(self, text: str, voice: str | None = None, *, speed: float = 1.0,
                   pitch: float = 0.0) -> tuple[np.ndarray, int]:
        """Speak `text`; return (float32 mono array, TARGET_SAMPLING_RATE).

        speed: tempo factor (1.0 = the voice's normal rate, 1.2 = 20 % faster); pitch: shift in semitones.
        Raises UnspeakableTextError for text that cannot be spoken, ValueError for an unknown voice or bad
        speed, TTSBackendUnavailableError when the engine is not installed.
        """
        voice = self.resolve_voice(voice)
        if not 0.25 <= float(speed) <= 4.0:
            raise ValueError(f"speed must be within [0.25, 4.0], got {speed}")
        if abs(float(pitch)) > 12:
            raise ValueError(f"pitch shift must be within ±12 semitones, got {pitch}")
        text = check_speakable(text, latin_only=self.latin_only(voice))
        pause = np.zeros(int(PAUSE_BETWEEN_CHUNKS_S * TARGET_SAMPLING_RATE), dtype=np.float32)
        parts: list[np.ndarray] = []
        for piece in split_for_synthesis(text):
            audio, sampling_rate = self._synthesize_piece(piece, voice, float(speed), float(pitch))
            if pitch and not self.supports_native_pitch:
                audio = shift_pitch(np.asarray(audio, np.float32), sampling_rate, pitch)
            if parts:
                parts.append(pause)
            parts.append(to_16k_mono(audio, sampling_rate))
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if audio.size == 0 or not np.isfinite(audio).all():
            raise RuntimeError(f"{self.name} voice {voice!r} returned no usable audio for {text[:40]!r}")
        return audio, TARGET_SAMPLING_RATE

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default_voice={self.default_voice!r})"
