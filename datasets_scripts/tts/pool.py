"""Voice specs ("BACKEND[:VOICE]"), voice pools, and the stable per-row voice assignment."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from modeling_salad import SAMPLING_RATE

from .augment import NOISE_COLORS, add_noise, reverberate
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


def _uniform(low: float, high: float, *parts) -> float:
    """A stable number in [low, high) from the parts."""
    return low + (high - low) * (_unit_interval(*parts) + 1.0) / 2


def _checked_range(name: str, value, low: float, high: float) -> tuple[float, float]:
    """(min, max) with low <= min <= max <= high, or a ValueError naming the option."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}") from None
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got ({lo}, {hi})")
    return lo, hi


def _checked_colors(colors) -> tuple[str, ...]:
    colors = tuple(c.strip() for c in colors.split(",")) if isinstance(colors, str) else tuple(colors)
    unknown = [c for c in colors if c not in NOISE_COLORS]
    if not colors or unknown:
        raise ValueError(f"noise_colors must be a non-empty subset of {NOISE_COLORS}, got {colors!r}")
    return colors


@dataclass(frozen=True)
class Variation:
    """What one row got: speed factor, pitch shift (semitones), and the noise/reverb draws (None = not applied)."""

    speed: float
    pitch: float
    noise_snr_db: float | None = None
    noise_color: str | None = None
    reverb_rt60_s: float | None = None
    reverb_drr_db: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class VoicePool:
    """Assigns each row a voice, speed/pitch variation and noise/reverb augmentation from a stable hash of its id.

    speed_jitter 0.1 gives speeds uniformly in [0.9, 1.1]; pitch_jitter 2 gives pitch shifts in [-2, 2] semitones;
    noise_snr_db (15, 30) adds noise of one of `noise_colors` at an SNR drawn in [15, 30] dB to every clip;
    reverb_probability 0.5 puts half the rows in a synthetic room with RT60 in `reverb_rt60_s` seconds and a
    direct-to-reverberant ratio in `reverb_drr_db`. Every draw depends only on (row id, seed), so every machine and
    every resumed run gives a row the same voice and the same augmentation.
    """

    def __init__(self, specs, *, speed: float = 1.0, speed_jitter: float = 0.0, pitch_jitter: float = 0.0,
                 noise_snr_db=None, noise_colors=NOISE_COLORS, reverb_probability: float = 0.0,
                 reverb_rt60_s=(0.2, 0.8), reverb_drr_db=(0.0, 10.0), seed: int = 0, validate: bool = True):
        self.specs = parse_voice_pool(specs) if isinstance(specs, str) or (
            specs and isinstance(specs[0], str)) else list(specs)
        if not self.specs:
            raise ValueError("The TTS voice pool is empty")
        if not 0 <= speed_jitter < 1:
            raise ValueError(f"speed_jitter must be in [0, 1), got {speed_jitter}")
        if not 0 <= pitch_jitter <= 12:
            raise ValueError(f"pitch_jitter must be in [0, 12] semitones, got {pitch_jitter}")
        if not 0 <= reverb_probability <= 1:
            raise ValueError(f"reverb_probability must be in [0, 1], got {reverb_probability}")
        self.speed, self.speed_jitter, self.pitch_jitter, self.seed = speed, speed_jitter, pitch_jitter, seed
        self.noise_snr_db = None if noise_snr_db is None else _checked_range("noise_snr_db", noise_snr_db, -10, 80)
        self.noise_colors = _checked_colors(noise_colors)
        self.reverb_probability = float(reverb_probability)
        self.reverb_rt60_s = _checked_range("reverb_rt60_s", reverb_rt60_s, 0.05, 3.0)
        self.reverb_drr_db = _checked_range("reverb_drr_db", reverb_drr_db, -10, 30)
        if validate:  # resolve every voice now, so a typo fails before hours of synthesis
            self.specs = [VoiceSpec(s.backend, get_backend(s.backend).resolve_voice(s.voice)) for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.specs)

    def settings(self) -> dict:
        """The variation options (constructor keywords): a run's content key and a worker's copy of the pool.
        Augmentation that is off is left out, so folders written before it existed still resume."""
        out = {"speed": self.speed, "speed_jitter": self.speed_jitter, "pitch_jitter": self.pitch_jitter}
        if self.noise_snr_db is not None:
            out.update(noise_snr_db=list(self.noise_snr_db), noise_colors=list(self.noise_colors))
        if self.reverb_probability > 0:
            out.update(reverb_probability=self.reverb_probability, reverb_rt60_s=list(self.reverb_rt60_s),
                       reverb_drr_db=list(self.reverb_drr_db))
        return out

    def pick(self, row_id) -> tuple[str, str | None]:
        spec = self.specs[stable_hash("voice", self.seed, row_id) % len(self.specs)]
        return spec.backend, spec.voice

    def variation(self, row_id) -> Variation:
        """Every parameter drawn for the row (rounded: the values applied are the values recorded)."""
        speed = self.speed * (1.0 + self.speed_jitter * _unit_interval("speed", self.seed, row_id))
        pitch = self.pitch_jitter * _unit_interval("pitch", self.seed, row_id)
        drawn = {"speed": round(speed, 4), "pitch": round(pitch, 3)}
        if self.noise_snr_db is not None:
            drawn["noise_snr_db"] = round(_uniform(*self.noise_snr_db, "snr", self.seed, row_id), 2)
            drawn["noise_color"] = self.noise_colors[stable_hash("color", self.seed, row_id) % len(self.noise_colors)]
        if _uniform(0.0, 1.0, "reverb", self.seed, row_id) < self.reverb_probability:
            drawn["reverb_rt60_s"] = round(_uniform(*self.reverb_rt60_s, "rt60", self.seed, row_id), 3)
            drawn["reverb_drr_db"] = round(_uniform(*self.reverb_drr_db, "drr", self.seed, row_id), 2)
        return Variation(**drawn)

    def augment(self, audio: np.ndarray, row_id, clip_id=None, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
        """The row's reverb, then its noise (a room, then the microphone), on synthesized audio. The waveforms are
        seeded by (row id, clip id): the spans of one document share a room and an SNR, not the same noise."""
        drawn = self.variation(row_id)
        rng = np.random.default_rng(stable_hash("augment", self.seed, row_id, clip_id))
        if drawn.reverb_rt60_s is not None:
            audio = reverberate(audio, sampling_rate, drawn.reverb_rt60_s, drawn.reverb_drr_db, rng)
        if drawn.noise_snr_db is not None:
            audio = add_noise(audio, drawn.noise_snr_db, drawn.noise_color, rng, sampling_rate)
        return audio

    def synthesize(self, row_id, text: str, clip_id=None) -> tuple[np.ndarray, int, str, str]:
        """Speak `text` with the row's voice and augmentation; return (audio, SAMPLING_RATE (16 kHz), backend
        name, voice)."""
        backend_name, voice = self.pick(row_id)
        backend = get_backend(backend_name)
        voice = backend.resolve_voice(voice)
        drawn = self.variation(row_id)
        audio, sampling_rate = backend.synthesize(text, voice, speed=drawn.speed, pitch=drawn.pitch)
        return self.augment(audio, row_id, clip_id, sampling_rate), sampling_rate, backend_name, voice
