"""SaladProcessor and load_audio: counts, chunking, padding sides, chat template, bad input handling."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import make_tiny_salad, sine
from modeling_salad.processing_salad import load_audio


@pytest.fixture(scope="module")
def whisper_processor():
    return make_tiny_salad(stack_factor=8)[1]


@pytest.mark.parametrize(
    "seconds, expected",
    [(0.5, 4), (1.0, 7), (10.0, 63), (35.0, 188 + 32)],  # ceil(frames/8) per 30 s chunk, as Ultravox
)
def test_num_audio_tokens_whisper(whisper_processor, seconds, expected):
    n = int(seconds * 16000)
    assert whisper_processor.num_audio_tokens(n) == expected
    inputs = whisper_processor(text="<|audio|>", audio=sine(seconds), sampling_rate=16000)
    assert int((inputs["input_ids"] == whisper_processor.audio_token_id).sum()) == expected
    assert inputs["input_features"].shape[0] == (2 if seconds > 30 else 1)


def test_num_audio_tokens_mimi_matches_model():
    model, processor = make_tiny_salad(audio="mimi")
    for seconds in (0.08, 0.5, 1.0, 3.3):
        clip = sine(seconds)
        inputs = processor(text="<|audio|>", audio=clip, sampling_rate=16000)
        with torch.no_grad():
            features = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
        assert features.shape[0] == processor.num_audio_tokens(len(clip)) == int(np.ceil(seconds * 12.5 - 1e-9))


def test_padding_sides_and_returned_keys(whisper_processor):
    tok = whisper_processor.tokenizer
    for side in ("left", "right"):
        tok.padding_side = side
        out = whisper_processor(text=["a", "a much longer text"], return_tensors="pt")
        assert set(out) == {"input_ids", "attention_mask"}
        mask = out["attention_mask"][0]
        assert (mask[0] == 0) if side == "left" else (mask[-1] == 0)
    tok.padding_side = "right"


def test_audio_count_must_match_placeholders(whisper_processor):
    with pytest.raises(ValueError, match="2 '<\\|audio\\|>' placeholders but 1 audio"):
        whisper_processor(text="<|audio|> <|audio|>", audio=sine(1.0), sampling_rate=16000)
    with pytest.raises(ValueError, match="0 '<\\|audio\\|>' placeholders but 1 audio"):
        whisper_processor(text="nothing", audio=sine(1.0), sampling_rate=16000)


def test_chat_template_with_several_audios(whisper_processor):
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "audio", "array": sine(0.5), "sampling_rate": 16000},
                                     {"type": "text", "text": " and "},
                                     {"type": "audio", "array": sine(1.0, seed=1), "sampling_rate": 16000}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "audio", "array": sine(0.3, seed=2), "sampling_rate": 16000}]},
    ]
    text = whisper_processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert text.count("<|audio|>") == 3 and text.endswith("<|im_start|>assistant\n")
    inputs = whisper_processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    expected = sum(whisper_processor.num_audio_tokens(int(s * 16000)) for s in (0.5, 1.0, 0.3))
    assert int((inputs["input_ids"] == whisper_processor.audio_token_id).sum()) == expected
    assert inputs["input_features"].shape[0] == 3


def test_load_audio_conversions(tmp_path):
    mono = sine(1.0)
    stereo = np.stack([mono, mono], axis=1)
    np.testing.assert_allclose(load_audio(stereo, 16000), mono, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo.T, 16000), mono, atol=1e-6)
    as_int16 = (mono * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(as_int16, 16000), mono, atol=1e-3)
    as_int32 = (mono * 2**31).astype(np.int32)
    np.testing.assert_allclose(load_audio(as_int32, 16000), mono, atol=1e-5)
    resampled = load_audio(sine(1.0, rate=44100), 44100)
    assert resampled.dtype == np.float32 and abs(len(resampled) - 16000) <= 1
    path = tmp_path / "clip.wav"
    sf.write(path, sine(0.5, rate=8000), 8000)
    assert len(load_audio(str(path))) == 8000
    buffer = io.BytesIO()
    sf.write(buffer, mono, 16000, format="WAV")
    assert len(load_audio({"bytes": buffer.getvalue(), "path": "x.wav"})) == 16000
    assert len(load_audio({"array": mono, "sampling_rate": 16000})) == 16000
    assert len(load_audio(torch.from_numpy(mono), 16000)) == 16000


def test_load_audio_rejects_bad_input(tmp_path, whisper_processor):
    with pytest.raises(ValueError, match="empty"):
        load_audio(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_audio(np.array([0.1, np.nan], np.float32), 16000)
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_audio(np.array([0.1, np.inf], np.float32), 16000)
    with pytest.raises(ValueError, match="sampling_rate` is required"):
        load_audio(sine(0.1))
    with pytest.raises(ValueError, match="does not exist"):
        load_audio(str(tmp_path / "missing.wav"))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00not really a wav")
    with pytest.raises(ValueError, match="corrupt.wav"):
        load_audio(str(corrupt))
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        load_audio(np.zeros((2, 2, 2), np.float32), 16000)
    # the processor surfaces the same errors, never a torch shape error
    with pytest.raises(ValueError, match="audio 0: audio is empty"):
        whisper_processor(text="<|audio|>", audio=np.zeros(0, np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="max_audio_seconds"):
        whisper_processor(text="<|audio|>", audio=np.zeros(16000 * 601, np.float32), sampling_rate=16000)


def test_very_short_clip_still_gives_one_token(whisper_processor):
    inputs = whisper_processor(text="<|audio|>", audio=np.full(10, 0.1, np.float32), sampling_rate=16000)
    assert int((inputs["input_ids"] == whisper_processor.audio_token_id).sum()) == 1


def test_saved_chat_template_renders_audio_parts_with_base_template(whisper_processor, tmp_path):
    conversation = [{"role": "user", "content": [{"type": "text", "text": "Hear "}, {"type": "audio", "path": "a.wav"}]}]
    rendered = whisper_processor.tokenizer.apply_chat_template(
        conversation, chat_template=whisper_processor.chat_template, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nHear <|audio|><|im_end|>\n<|im_start|>assistant\n"
    whisper_processor.save_pretrained(tmp_path)
    from modeling_salad import SaladProcessor

    assert SaladProcessor.from_pretrained(tmp_path).chat_template == whisper_processor.chat_template


def test_audio_token_attributes_survive_save_and_load(whisper_processor, tmp_path):
    from modeling_salad import SaladProcessor

    assert whisper_processor.audio_token == "<|audio|>"
    assert whisper_processor.audio_token_id == whisper_processor.tokenizer.convert_tokens_to_ids("<|audio|>")
    whisper_processor.save_pretrained(tmp_path)
    loaded = SaladProcessor.from_pretrained(tmp_path)
    assert (loaded.audio_token, loaded.audio_token_id) == (whisper_processor.audio_token,
                                                           whisper_processor.audio_token_id)
    assert loaded.adapter_type == whisper_processor.adapter_type == "mlp"


def test_call_defaults_come_from_processing_kwargs(whisper_processor):
    out = whisper_processor(text=["a", "a longer one"])
    assert isinstance(out["input_ids"], torch.Tensor) and "token_type_ids" not in out
    as_lists = whisper_processor(text=["a", "a longer one"], return_tensors=None, padding=False)
    assert isinstance(as_lists["input_ids"], list) and len(as_lists["input_ids"][0]) < len(as_lists["input_ids"][1])
    with pytest.raises(ValueError, match="Mismatch in `audio` token count"):
        whisper_processor(text="<|audio|>", audio=sine(1.0), sampling_rate=16000, truncation=True, max_length=3)
