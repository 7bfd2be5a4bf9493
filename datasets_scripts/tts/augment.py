"""Noise and reverberation applied to synthesized speech, deterministic from a numpy Generator.

Reverberation convolves the clip with a synthetic room impulse response (a direct path followed by exponentially
decaying Gaussian noise, the standard statistical model of a diffuse late reverb) rather than running sox's
`reverb`: the response is drawn from the row's own Generator, so the room is reproducible without a subprocess or
temp files per clip, its RT60 and direct-to-reverberant ratio are exact parameters to record, and truncating the
convolution keeps the clip length unchanged (sox appends a tail).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

NOISE_COLORS = ("white", "pink", "brown")
# power spectral density ~ 1 / f**exponent
_COLOR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}
# the late reverb starts a few milliseconds after the direct sound (the first reflections' delay)
_PREDELAY_S = 0.003
# pink/brown noise power grows without bound towards 0 Hz; below this its spectrum is held flat, so the SNR counts
# noise in the band a listener (and Whisper's mel filterbank) hears rather than sub-audible drift
_NOISE_FLOOR_HZ = 50.0
# -60 dB of amplitude is a factor 1000: exp(-ln(1000) * t / rt60)
_LN_1000 = np.log(1000.0)


def colored_noise(rng: np.random.Generator, n: int, color: str, sampling_rate: int = 16000) -> np.ndarray:
    """`n` samples of zero-mean noise with unit power and the spectrum of `color` (white, pink or brown)."""
    if color not in _COLOR_EXPONENT:
        raise ValueError(f"noise color must be one of {NOISE_COLORS}, got {color!r}")
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sampling_rate), _NOISE_FLOOR_HZ)
    noise = np.fft.irfft(spectrum * freqs ** (-_COLOR_EXPONENT[color] / 2), n)
    noise -= noise.mean()
    power = float(np.mean(noise ** 2))
    return (noise / np.sqrt(power) if power > 0 else noise).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, color: str, rng: np.random.Generator,
              sampling_rate: int = 16000) -> np.ndarray:
    """`audio` plus `color` noise whose power is the clip's mean power / 10**(snr_db / 10)."""
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    if power == 0:
        return audio
    noise = colored_noise(rng, audio.size, color, sampling_rate) * np.sqrt(power / 10 ** (snr_db / 10))
    return _below_clipping(audio + noise)


def impulse_response(rng: np.random.Generator, sampling_rate: int, rt60_s: float, drr_db: float) -> np.ndarray:
    """A unit direct path, then a decaying noise tail reaching -60 dB at `rt60_s` whose energy is the direct
    path's / 10**(drr_db / 10)."""
    start = int(_PREDELAY_S * sampling_rate)
    t = np.arange(int(rt60_s * sampling_rate)) / sampling_rate
    tail = rng.standard_normal(t.size) * np.exp(-_LN_1000 * t / rt60_s)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
    response = np.zeros(start + t.size)
    response[0] = 1.0
    response[start:] = tail
    return response


def reverberate(audio: np.ndarray, sampling_rate: int, rt60_s: float, drr_db: float,
                rng: np.random.Generator) -> np.ndarray:
    """`audio` in a synthetic room: same length (the tail past the clip's end is cut), peak kept at the input's."""
    if audio.size == 0:
        return audio
    wet = fftconvolve(audio, impulse_response(rng, sampling_rate, rt60_s, drr_db))[:audio.size]
    peak, wet_peak = float(np.max(np.abs(audio))), float(np.max(np.abs(wet)))
    return (wet * (peak / wet_peak) if wet_peak > 0 else wet).astype(np.float32)


def _below_clipping(audio: np.ndarray, ceiling: float = 0.99) -> np.ndarray:
    """Scale the whole clip down when its peak exceeds `ceiling` (scaling keeps the SNR; clipping would not)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (ceiling / peak) if peak > ceiling else audio).astype(np.float32)
