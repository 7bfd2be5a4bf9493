"""SaladForCausalLM behaviour on tiny random configs (CPU, offline)."""

import importlib.util

import pytest
import torch

from conftest import make_tiny_salad, sine
from modeling_salad import SaladForCausalLM
from modeling_salad.modeling_salad import stack_frames

VARIANTS = [
    dict(audio="whisper", adapter_type="mlp", audio_padding="window"),
    dict(audio="whisper", adapter_type="transformer", audio_padding="window"),
    dict(audio="whisper", adapter_type="mlp", audio_padding="none", stack_factor=3),
    dict(audio="whisper", adapter_type="transformer", audio_padding="none"),
    dict(audio="mimi", adapter_type="mlp"),
    dict(audio="mimi", adapter_type="transformer", stack_factor=2),
]


def _real_logits(logits, attention_mask):
    return [row[mask.bool()] for row, mask in zip(logits, attention_mask)]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_forward_shapes_and_placeholder_counts(variant):
    model, processor = make_tiny_salad(**variant)
    clips = [sine(1.0), sine(0.37, seed=1), sine(2.3, seed=2)]
    inputs = processor(text=["hi <|audio|> there", "<|audio|> and <|audio|>?"], audio=clips, sampling_rate=16000)
    assert set(inputs) == {"input_ids", "attention_mask", "input_features", "input_features_mask"}
    with torch.no_grad():
        out = model(**inputs)
        features = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
    batch, length = inputs["input_ids"].shape
    assert out.logits.shape == (batch, length, model.config.text_config.vocab_size)
    expected = sum(processor.num_audio_tokens(len(c)) for c in clips)
    assert features.shape == (expected, model.config.text_config.hidden_size)
    assert int((inputs["input_ids"] == processor.audio_token_id).sum()) == expected
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[3], VARIANTS[4]], ids=["window", "none", "mimi"])
def test_left_and_right_padding_and_batch_vs_single(variant):
    model, processor = make_tiny_salad(**variant)
    texts = ["a <|audio|> b", "longer text here: <|audio|> then more words"]
    clips = [sine(1.7), sine(0.6, seed=3)]
    results = {}
    for side in ("left", "right"):
        processor.tokenizer.padding_side = side
        inputs = processor(text=texts, audio=clips, sampling_rate=16000)
        with torch.no_grad():
            results[side] = _real_logits(model(**inputs).logits, inputs["attention_mask"])
    for left, right in zip(results["left"], results["right"]):
        torch.testing.assert_close(left, right, atol=1e-4, rtol=1e-4)
    for i, (text, clip) in enumerate(zip(texts, clips)):
        single = processor(text=text, audio=clip, sampling_rate=16000)
        with torch.no_grad():
            logits = model(**single).logits[0]
        torch.testing.assert_close(logits, results["right"][i], atol=1e-4, rtol=1e-4)


def test_placeholder_count_mismatch_raises():
    model, processor = make_tiny_salad()
    inputs = processor(text="x <|audio|> y", audio=sine(1.0), sampling_rate=16000)
    ids = inputs["input_ids"].clone()
    first = int((ids[0] == processor.audio_token_id).nonzero()[0])
    ids[0, first] = processor.tokenizer.convert_tokens_to_ids("x")
    with pytest.raises(ValueError, match=r"\d+ `<\|audio\|>` tokens.*\d+ audio embeddings"):
        model(input_ids=ids, attention_mask=inputs["attention_mask"], input_features=inputs["input_features"],
              input_features_mask=inputs["input_features_mask"])
    with pytest.raises(ValueError, match="no audio was given"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    text_only = processor(text="no audio here")
    with pytest.raises(ValueError, match="0 `<\\|audio\\|>` tokens"):
        model(**text_only, input_features=inputs["input_features"], input_features_mask=inputs["input_features_mask"])


def test_long_clip_is_chunked_not_cut():
    model, processor = make_tiny_salad(stack_factor=4)
    clip = sine(35.0)
    inputs = processor(text="<|audio|>", audio=clip, sampling_rate=16000)
    assert inputs["input_features"].shape[0] == 2  # 30 s + 5 s
    expected = 375 + 63  # ceil(1500 / 4) + ceil(250 / 4)
    assert processor.num_audio_tokens(len(clip)) == expected
    assert int((inputs["input_ids"] == processor.audio_token_id).sum()) == expected
    with torch.no_grad():
        features = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
    assert features.shape[0] == expected


def test_precomputed_encoder_states_match_features():
    model, processor = make_tiny_salad(adapter_type="transformer")
    inputs = processor(text=["q <|audio|>", "r <|audio|> s"], audio=[sine(1.2), sine(0.4, seed=5)], sampling_rate=16000)
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        direct = model(**inputs).logits
        cached = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       audio_encoder_states=states, audio_encoder_mask=mask).logits
    assert states.shape[:2] == mask.shape and states.shape[-1] == model.config.audio_hidden_size
    torch.testing.assert_close(direct, cached)
    generated = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                               audio_encoder_states=states, audio_encoder_mask=mask, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4


def test_logits_to_keep_and_labels():
    model, processor = make_tiny_salad()
    inputs = processor(text="a <|audio|> b c", audio=sine(0.5), sampling_rate=16000)
    with torch.no_grad():
        full = model(**inputs).logits
        last = model(**inputs, logits_to_keep=1).logits
        out = model(**inputs, labels=inputs["input_ids"])
    torch.testing.assert_close(last[:, -1], full[:, -1])
    assert last.shape[1] == 1 and torch.isfinite(out.loss)


def test_generate_with_and_without_audio_and_cache_equivalence():
    model, processor = make_tiny_salad()
    processor.tokenizer.padding_side = "left"
    conversation = [
        {"role": "user", "content": [{"type": "text", "text": "Compare "},
                                     {"type": "audio", "array": sine(0.8), "sampling_rate": 16000},
                                     {"type": "text", "text": " with "},
                                     {"type": "audio", "audio": sine(1.1, seed=2), "sampling_rate": 16000}]},
    ]
    inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    assert inputs["input_features"].shape[0] == 2
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    with_cache = model.generate(**inputs, use_cache=True, **kwargs)
    without_cache = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(with_cache, without_cache)
    assert with_cache.shape[1] == inputs["input_ids"].shape[1] + 6
    text_only = processor(text=["hello", "a longer prompt"])
    generated = model.generate(**text_only, **kwargs)
    assert generated.shape[1] == text_only["input_ids"].shape[1] + 6


def test_training_step_freezes_tower_and_supports_checkpointing():
    model, processor = make_tiny_salad(adapter_type="transformer")
    model.gradient_checkpointing_enable()
    model.train()
    inputs = processor(text="x <|audio|> y z", audio=sine(0.7), sampling_rate=16000)
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    assert all(p.grad is None for p in model.audio_tower.parameters())
    assert model.multi_modal_projector.linear_in.weight.grad.abs().sum() > 0
    assert model.language_model.get_input_embeddings().weight.grad is not None


def test_stack_frames_uses_real_frames_only():
    states = torch.arange(2 * 5 * 1, dtype=torch.float32).reshape(2, 5, 1) + 1
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    stacked, token_mask = stack_frames(states, mask, 2)
    assert stacked.shape == (2, 3, 2)
    assert token_mask.tolist() == [[True, True, True], [True, True, False]]
    assert stacked[1, 1].tolist() == [8.0, 0.0]  # the 4th frame is padding, zeroed


def test_save_load_dtype_and_attn_implementation(tmp_path):
    model, processor = make_tiny_salad()
    model.save_pretrained(tmp_path)
    reloaded = SaladForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16, attn_implementation="eager")
    assert reloaded.language_model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert reloaded.language_model.config._attn_implementation == "eager"
    assert reloaded.config.base_text_model == "tiny-llama"
    same = SaladForCausalLM.from_pretrained(tmp_path)
    inputs = processor(text="a <|audio|>", audio=sine(0.5), sampling_rate=16000)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, same(**inputs).logits)


def test_lora_attach_save_reload(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model, processor = make_tiny_salad(adapter_type="transformer")
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=r"language_model\..*\.(q_proj|v_proj)", init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("language_model" in n and "lora_" in n for n in names)
    inputs = processor(text="a <|audio|> b", audio=sine(0.5), sampling_rate=16000)
    with torch.no_grad():
        adapted = peft_model(**inputs).logits
        with peft_model.disable_adapter():
            plain = peft_model(**inputs).logits
    assert not torch.allclose(adapted, plain)
    peft_model.save_pretrained(tmp_path / "lora")
    reloaded = PeftModel.from_pretrained(SaladForCausalLM.from_pretrained(base_dir), tmp_path / "lora")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, adapted)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_bnb_quantizes_llm_only(tmp_path):
    from transformers import BitsAndBytesConfig

    model, _ = make_tiny_salad()
    model.save_pretrained(tmp_path)
    config = BitsAndBytesConfig(load_in_4bit=True)
    quantized = SaladForCausalLM.from_pretrained(tmp_path, quantization_config=config)
    assert {"audio_tower", "multi_modal_projector"} <= set(config.llm_int8_skip_modules)
    assert isinstance(quantized.multi_modal_projector.linear_1, torch.nn.Linear)
    assert type(quantized.language_model.model.layers[0].self_attn.q_proj).__name__ != "Linear"


def test_build_salad_from_folders(tmp_path):
    from transformers import LlamaForCausalLM, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from conftest import make_tiny_tokenizer, tiny_text_config, tiny_whisper_config
    from modeling_salad import build_salad

    plain = make_tiny_tokenizer(with_audio_token=False)
    assert "<|audio|>" not in plain.get_vocab()
    llm = LlamaForCausalLM(tiny_text_config(len(plain)))
    llm.save_pretrained(tmp_path / "llm")
    plain.save_pretrained(tmp_path / "llm")
    whisper = WhisperForConditionalGeneration(tiny_whisper_config())
    whisper.save_pretrained(tmp_path / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path / "whisper")

    model, processor = build_salad(str(tmp_path / "llm"), str(tmp_path / "whisper"), adapter_type="mlp",
                                   adapter_hidden_size=32, stack_factor=2)
    assert model.config.base_text_model == str(tmp_path / "llm")
    assert model.config.audio_token_id == processor.audio_token_id
    assert model.get_input_embeddings().weight.shape[0] > processor.audio_token_id
    torch.testing.assert_close(model.audio_tower.conv1.weight, whisper.model.encoder.conv1.weight)
    torch.testing.assert_close(model.language_model.model.layers[0].mlp.up_proj.weight,
                               llm.model.layers[0].mlp.up_proj.weight)
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio", "array": sine(0.6), "sampling_rate": 16000}]}],
        add_generation_prompt=True, tokenize=True)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


class _BoostToken:
    """Logits processor adding a large constant to one token's score (a model that wants to write it)."""

    def __init__(self, token_id):
        self.token_id = token_id

    def __call__(self, input_ids, scores):
        scores[:, self.token_id] += 1e4
        return scores


@pytest.mark.parametrize("suppressed", [False, True], ids=["forced", "suppressed"])
def test_generate_survives_an_emitted_audio_token(tmp_path, suppressed):
    from transformers import LogitsProcessorList

    model, processor = make_tiny_salad()
    model.save_pretrained(tmp_path)
    model = SaladForCausalLM.from_pretrained(tmp_path).eval()
    audio_id = processor.audio_token_id
    assert audio_id in model.generation_config.suppress_tokens  # saved with the checkpoint
    if not suppressed:
        model.generation_config.suppress_tokens = None
    inputs = processor(text="say <|audio|>", audio=sine(0.5), sampling_rate=16000)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, logits_processor=LogitsProcessorList(
        [_BoostToken(audio_id)]))
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert len(new) == 4
    assert (audio_id not in new) if suppressed else new == [audio_id] * 4
