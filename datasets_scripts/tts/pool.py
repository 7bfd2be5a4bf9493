"""Voice specs ("BACKEND[:VOICE]"), voice pools, and the stable per-row voice assignment."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .registry import get_backend, canonical_backend_name


def stable_hash(*parts) -> int:
    """A 64-bit hash of the parts that is the same on every machine and Python run (unlike `hash`)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _unit_interval(*parts) -> float:
    """A stable number in [-1, 1) from the parts."""
    return stable_hash(*parts) / 2**63 - 1.0


@dataclass(frozen=True)
class VoiceSpec:
    backend: str
    voice: str | None = None

    def __str__(self) -> str:
        return f"{self.backend}:{self.voice}" if self.voice else self.backend


def parse_voice_spec(spec: str) -> VoiceSpec:
    spec = spec.strip()
    if not spec:
        raise ValueError("Empty TTS voice spec; expected BACKEND[:VOICE], e.g. piper, flite:slt, espeak-ng:en-us+f3")
    backend, _, voice = spec.partition(":")
    return VoiceSpec(canonical_backend_name(backend.strip()), voice.strip() or None)


def parse_voice_pool(specs: str | list[str]) -> list[VoiceSpec]:
    """Parse "piper,flite:slt,festival" (or a list of specs) into VoiceSpecs; duplicates are an error."""
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    pool = [parse_voice_spec(s) for s in items]
    if not pool:
        raise ValueError("The TTS voice pool is empty")
    if len(set(pool)) != len(pool):
        raise ValueError(f"Duplicate voice in TTS pool: {specs!r}")
    return pool


class VoicePool:
    """Assigns each row a voice (and optional speed/pitch variation) from a stable hash of its id.

    speed_jitter 0.1 gives speeds uniformly in [0.9, 1.1]; pitch_jitter 2 gives pitch shifts in [-2, 2] semitones;
    the draw depends only on (row id, seed), so every machine and every resumed run picks the same voice.
    """

    def __init__(self, specs, *, speed: float = 1.0, speed_jitter: float = 0.0, pitch_jitter: float = 0.0,
                 seed: int = 0, validate: bool = True):
        self.specs = parse_voice_pool(specs) if isinstance(specs, str) or (
            specs and isinstance(specs[0], str)) else list(specs)
        if not self.specs:
            raise ValueError("The TTS voice pool is empty")
        if not 0 <= speed_jitter < 1:
            raise ValueError(f"speed_jitter must be in [0, 1), got {speed_jitter}")
        if not 0 <= pitch_jitter <= 12:
            raise ValueError(f"pitch_jitter must be in [0, 12] semitones, got {pitch_jitter}")
        self.speed, self.speed_jitter, self.pitch_jitter, self.seed = speed, speed_jitter, pitch_jitter, seed
        if validate:  # resolve every voice now, so a typo fails before hours of synthesis
            self.specs = [VoiceSpec(s.backend, get_backend(s.backend).resolve_voice(s.voice)) for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.specs)

    def pick(self, row_id) -> tuple[str, str | None]:
        spec = self.specs[stable_hash("voice", self.seed, row_id) % len(self.specs)]
        return spec.backend, spec.voice

    def variation(self, row_id) -> tuple[float, float]:
        speed = self.speed * (1.0 + self.speed_jitter * _unit_interval("speed", self.seed, row_id))
        pitch = self.pitch_jitter * _unit_interval("pitch", self.seed, row_id)
        return round(speed, 4), round(pitch, 3)

    def synthesize(self, row_id, text: str) -> tuple[np.ndarray, int, str, str]:
        """Speak `text` with the row's voice; return (audio, SAMPLING_RATE (16 kHz), backend name, voice)."""
        backend_name, voice = self.pick(row_id)
        backend = get_backend(backend_name)
        voice = backend.resolve_voice(voice)
        speed, pitch = self.variation(row_id)
        audio, sampling_rate = backend.synthesize(text, voice, speed=speed, pitch=pitch)
        return audio, sampling_rate, backend_name, voice
