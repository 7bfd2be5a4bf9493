"""The encoder-state cache with a front end whose precompute step uses its own weights (the posterior front end):
the encoder's frames are kept and reused, every clip is encoded in batches, and other adapters read the frames."""

import numpy as np
import torch

from conftest import sine
from modeling_salad.posterior_adapter import unpack_posterior_states
from test_posterior_adapter import tiny_model, transcript_twin


def _counting_encoder_calls(model) -> list:
    calls = []
    model.audio_encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _direct_states(model, processor, wave):
    from spans import EncodedClip

    with torch.no_grad():
        features = processor.extract_audio_features([wave])
        states = model.encode_audio(features["input_features"], features["input_features_mask"])
    return EncodedClip.from_encoder(*states)


def test_a_checkpoint_that_trained_only_the_projector_reuses_the_cached_encoder_frames(tmp_path):
    from spans import EncoderStatesCache

    model, processor = tiny_model(posterior_numeral_bias=True)
    projector, calls = model.multi_modal_projector, _counting_encoder_calls(model)
    wave = sine(1.0)
    first = EncoderStatesCache(tmp_path).encode(model, processor, wave)
    assert len(calls) == 1
    _, before, _ = unpack_posterior_states(torch.from_numpy(first.states), torch.from_numpy(first.mask), 1500)
    numeral = int(before[before >= 0][0]) + 1
    with torch.no_grad():
        projector.numeral_tokens[numeral] = 1.0
        projector.numeral_bias.fill_(1e4)  # the greedy transcript changes, the encoder does not
    second = EncoderStatesCache(tmp_path).encode(model, processor, wave)  # a new process on the same folder
    assert len(calls) == 1
    _, tokens, _ = unpack_posterior_states(torch.from_numpy(second.states), torch.from_numpy(second.mask), 1500)
    assert set(tokens[tokens >= 0].tolist()) == {numeral}
    expected = _direct_states(model, processor, wave)
    assert second.states.tobytes() == expected.states.tobytes() and (second.mask == expected.mask).all()


def test_batched_precompute_reuses_frames_and_matches_the_model(tmp_path):
    from spans import EncoderStatesCache

    model, processor = tiny_model(posterior_numeral_bias=True)
    calls = _counting_encoder_calls(model)
    waves = [sine(0.6, seed=1), sine(0.9, seed=2, freq=420)]
    documents = [{"id": str(i), "spans": [{"text": "heard", "audio": {"array": w, "sampling_rate": 16000}}]}
                 for i, w in enumerate(waves)]
    assert EncoderStatesCache.for_model(model, processor, tmp_path).precompute(model, processor, documents) == 2
    with torch.no_grad():
        model.multi_modal_projector.numeral_bias.fill_(0.5)
    cache = EncoderStatesCache.for_model(model, processor, tmp_path)
    assert cache.precompute(model, processor, documents) == 2 and len(calls) == 1  # one batch, then none
    for wave in waves:
        torch.testing.assert_close(torch.from_numpy(cache.load(wave).states),
                                   torch.from_numpy(_direct_states(model, processor, wave).states), atol=1e-5, rtol=0)


def test_a_projector_that_uses_no_own_weights_keeps_no_frames(tmp_path):
    from spans import EncoderStatesCache

    model, processor = tiny_model("transcript")
    assert not model.multi_modal_projector.precompute_uses_own_weights
    EncoderStatesCache(tmp_path).encode(model, processor, sine(0.5))
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_precompute_clips_encodes_in_batches_and_skips_what_is_cached(tmp_path):
    from spans import EncoderStatesCache

    model, processor = tiny_model(posterior_numeral_bias=True)
    calls = _counting_encoder_calls(model)
    waves = [sine(0.5 + 0.2 * i, seed=i, freq=300 + 50 * i) for i in range(3)]
    cache = EncoderStatesCache(tmp_path)
    assert cache.precompute_clips(model, processor, waves, batch_size=2) == 3 and len(calls) == 2
    assert cache.precompute_clips(model, processor, waves, batch_size=2) == 0 and len(calls) == 2
    stored = [cache.encode(model, processor, wave).states for wave in waves]
    assert len(calls) == 2
    for wave, states in zip(waves, stored):
        torch.testing.assert_close(torch.from_numpy(states),
                                   torch.from_numpy(_direct_states(model, processor, wave).states), atol=1e-5, rtol=0)


def test_another_adapter_on_the_same_encoder_reads_the_kept_frames_and_writes_none(tmp_path):
    from spans import EncoderStatesCache

    posterior, processor = tiny_model(posterior_numeral_bias=True)
    transcript = transcript_twin(posterior)
    wave = sine(0.8)
    EncoderStatesCache(tmp_path).encode(posterior, processor, wave)
    files = len(list(tmp_path.glob("*.npz")))
    calls = _counting_encoder_calls(transcript)
    states = EncoderStatesCache(tmp_path).encode(transcript, processor, wave).states
    assert calls == [] and len(list(tmp_path.glob("*.npz"))) == files + 1
    np.testing.assert_array_equal(states, _direct_states(transcript, processor, wave).states)
    EncoderStatesCache(tmp_path).encode(transcript, processor, sine(0.4))  # no frames of this clip: the encoder runs
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npz"))) == files + 2  # the direct check ran it once


def test_an_in_memory_cache_counts_states_not_frames():
    from spans import EncoderStatesCache

    model, processor = tiny_model(posterior_numeral_bias=True)
    cache = EncoderStatesCache()
    cache.encode(model, processor, sine(0.7))
    with torch.no_grad():
        model.multi_modal_projector.numeral_bias.fill_(0.5)
    calls = _counting_encoder_calls(model)
    cache.encode(model, processor, sine(0.7))
    assert len(cache) == 2 and calls == []  # two checkpoints' states; the frames sit beside them
