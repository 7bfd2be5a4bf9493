"""Regression pins: real outputs of SALAD built from the embedded SmolLM2-135M-Instruct + Whisper tiny.en.

The expected numbers were computed once (CPU, float32, `torch.manual_seed(0)` before `build_salad`) on the
LibriVox clip "he was not an ill disposed young man" from pocketsphinx-testdata. Any change to the encoder path,
the adapters, the placeholder expansion or the merge that moves these numbers is a behaviour change. Offline:
the parts come from the installed packages through `prepare_assets` (SALAD_CACHE).
"""

import pytest
import torch

pytestmark = [pytest.mark.assets, pytest.mark.slow]

CLIP = "sense_and_sensibility_01_austen_64kb-0880.wav"
QUESTION = " What did the speaker say?"
LOGITS_TOLERANCE = dict(atol=2e-4, rtol=1e-5)

EXPECTED = {
    "transcript": {
        "build": dict(adapter_type="transcript", stack_factor=10, adapter_hidden_size=256),
        "num_placeholders": 15,
        "first_audio": 24,
        # Whisper token ids greedy-read into the slots; -1 = filler past the transcript.
        "slot_ids": [679, 373, 407, 281, 1468, 12, 2777, 1335, 1862, 582, 13, -1, -1, -1, -1],
        "slot_hidden": [[35.343204498291016, 0.49933645129203796, -5.325029373168945, 5.296774387359619],
                        [44.3593635559082, -3.9454662799835205, 4.823827743530273, 6.18751335144043]],
        "last_logits": [15.174560546875, 15.474699974060059, 17.49374771118164, 13.670561790466309,
                        13.680288314819336, 12.537507057189941, 12.975082397460938, 12.539908409118652],
        "audio_logits": [4.893389701843262, -2.9918441772460938, 0.21466541290283203, -5.970871925354004,
                         -5.806919097900391, -4.841706275939941, -2.4483871459960938, -4.852389335632324],
        "generated": [504, 10831, 1137, 28, 476, 3681, 436, 441, 354, 1573, 29, 2401],
    },
    "mlp_unpadded": {
        "build": dict(adapter_type="mlp", stack_factor=8, adapter_hidden_size=256, audio_padding="none"),
        "num_placeholders": 19,
        "first_audio": 24,
        "states_head": [[-1.476105809211731, -0.6564616560935974, 1.8287651538848877, -0.06395715475082397],
                        [-0.8330231308937073, 0.9331488013267517, 1.5262889862060547, 0.35607823729515076],
                        [-0.12669837474822998, 0.9033948183059692, 0.5150793194770813, 0.39245498180389404]],
        "states_last_real": [-1.0322623252868652, 0.13652296364307404, -0.0853995755314827, -0.5562840700149536],
        "last_logits": [17.27406120300293, 13.186434745788574, 13.447552680969238, 11.318378448486328,
                        10.80040454864502, 11.112576484680176, 13.940606117248535, 11.114672660827637],
        "audio_logits": [20.81194496154785, 6.959224700927734, 8.398101806640625, 5.997941970825195,
                         5.089529991149902, 6.012112617492676, 10.22225570678711, 6.019732475280762],
        "generated": [504, 10831, 1137, 28, 476, 504, 725, 9966, 28, 260, 582, 617],
    },
}


@pytest.fixture(scope="module")
def assets():
    from salad_demo.assets import prepare_assets

    paths = prepare_assets()
    if paths["real_speech"] is None:
        pytest.skip("pocketsphinx-testdata is not installed")
    return paths


@pytest.fixture(scope="module")
def clip(assets):
    import soundfile as sf

    audio, rate = sf.read(f"{assets['real_speech']}/{CLIP}", dtype="float32")
    assert rate == 16000
    return audio


def _run(assets, clip, build):
    from modeling_salad import build_salad

    torch.manual_seed(0)
    model, processor = build_salad(assets["llm"], assets["whisper"], **build)
    conversation = [{"role": "user", "content": [{"type": "audio", "array": clip, "sampling_rate": 16000},
                                                 {"type": "text", "text": QUESTION}]}]
    inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return processor, inputs, states, mask, logits, generated[0, inputs["input_ids"].shape[1]:]


def _check_common(expected, processor, inputs, logits, generated):
    placeholders = (inputs["input_ids"][0] == processor.audio_token_id).nonzero()[:, 0]
    assert len(placeholders) == expected["num_placeholders"]
    assert int(placeholders[0]) == expected["first_audio"]
    torch.testing.assert_close(logits[0, -1, :8], torch.tensor(expected["last_logits"]), **LOGITS_TOLERANCE)
    audio_position = expected["first_audio"] + 2
    torch.testing.assert_close(logits[0, audio_position, :8], torch.tensor(expected["audio_logits"]),
                               **LOGITS_TOLERANCE)
    assert generated.tolist() == expected["generated"]


def test_transcript_adapter_pinned(assets, clip):
    expected = EXPECTED["transcript"]
    processor, inputs, states, mask, logits, generated = _run(assets, clip, expected["build"])
    assert int(mask.sum()) == expected["num_placeholders"]
    slot_ids = states[0, : int(mask.sum()), -1].round().long() - 1
    assert slot_ids.tolist() == expected["slot_ids"]
    torch.testing.assert_close(states[0, :2, :4], torch.tensor(expected["slot_hidden"]), atol=1e-3, rtol=1e-4)
    _check_common(expected, processor, inputs, logits, generated)
    answer = processor.tokenizer.decode(generated, skip_special_tokens=True)
    assert answer.startswith('The speaker said, "He was not an'), answer


def test_unpadded_whisper_mlp_pinned(assets, clip):
    expected = EXPECTED["mlp_unpadded"]
    processor, inputs, states, mask, logits, generated = _run(assets, clip, expected["build"])
    assert states.shape == (1, 150, 384) and int(mask.sum()) == 150
    torch.testing.assert_close(states[0, :3, :4], torch.tensor(expected["states_head"]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(states[0, 149, :4], torch.tensor(expected["states_last_real"]), atol=1e-4, rtol=1e-4)
    _check_common(expected, processor, inputs, logits, generated)
