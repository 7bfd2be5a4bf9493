"""SaladProcessor over random shapes, dtypes, rates and values: a ValueError or finite features, nothing else.

Seeded (SALAD_FUZZ_SEED picks another draw); string rates are covered in test_input_validation.py."""

import os
import warnings

import numpy as np
import pytest
import torch
from conftest import make_tiny_salad

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, bool]
RATES = [8000, 11025, 16000, 22050, 44100, 48000, 96000, 16000.0, np.int64(24000), np.float32(16000),
         0, -16000, float("nan"), float("inf"), None]


def _random_clip(rng):
    """(audio, rate, kind): a random array in a random layout; sometimes with NaN/inf or an odd shape."""
    rate = RATES[rng.integers(len(RATES))]
    usable = rate if isinstance(rate, (int, float, np.number)) and np.isfinite(rate) and rate > 0 else 16000
    samples = int(rng.choice([0, 1, 7, 160, int(rng.integers(1, 3 * usable))]))
    layout = rng.choice(["mono", "samples_channels", "channels_samples", "3d", "scalar"])
    shape = {"mono": (samples,), "samples_channels": (samples, 2), "channels_samples": (2, samples),
             "3d": (2, 2, samples), "scalar": ()}[layout]
    dtype = DTYPES[rng.integers(len(DTYPES))]
    values = rng.normal(0, rng.choice([1e-4, 0.1, 1.0, 30.0]), size=shape)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(values * info.max, info.min, info.max)
    array = values.astype(dtype)
    if rng.random() < 0.1 and np.issubdtype(dtype, np.floating) and array.size:
        array.flat[int(rng.integers(array.size))] = rng.choice([np.nan, np.inf, -np.inf])
    wrap = rng.choice(["array", "dict", "tensor"])
    if wrap == "dict":
        return {"array": array, "sampling_rate": rate}, None
    if wrap == "tensor" and array.dtype != np.uint16:
        return torch.from_numpy(np.ascontiguousarray(array)), rate
    return array, rate


@pytest.mark.parametrize("adapter", ["whisper", "mimi"])
def test_random_audio_gives_a_value_error_or_finite_features(adapter):
    _, processor = make_tiny_salad(audio=adapter, audio_padding="none")
    rng = np.random.default_rng(int(os.environ.get("SALAD_FUZZ_SEED", "0")))
    outcomes = {"ok": 0, "ValueError": 0}
    for _ in range(60):
        clip, rate = _random_clip(rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = processor(text="listen: <|audio|>", audio=[clip], sampling_rate=rate)
            except ValueError:
                outcomes["ValueError"] += 1
                continue
        features = out.get("input_features", out.get("input_values"))
        assert features is not None and torch.isfinite(torch.as_tensor(features)).all()
        outcomes["ok"] += 1
    print(adapter, outcomes)  # shown with -s
    assert outcomes["ok"] >= 10 and outcomes["ValueError"] >= 10, outcomes
