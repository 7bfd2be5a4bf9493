"""The transcript-aligned adapter: Whisper's decoder reads the clip, recognized tokens become bridged LLM embeddings."""

import pytest
import torch

from conftest import make_tiny_salad, make_tiny_tokenizer, sine
from modeling_salad import SaladConfig
from modeling_salad.builder import vocabulary_bridge
from modeling_salad.transcript_adapter import greedy_decode_slots, transcript_slots


def tiny_transcript_salad(seed=0):
    model, processor = make_tiny_salad(adapter_type="transcript", stack_factor=25, transcript_prompt_ids=[2],
                                       seed=seed)
    projector = model.multi_modal_projector
    vocab = model.config.audio_config.vocab_size
    # Whisper token i -> LLM tokens (i, i + 1) for odd i, (i,) for even i (a deterministic two-tokenizer bridge).
    projector.bridge_ids.zero_()
    projector.bridge_ids[:, 0] = torch.arange(vocab) + 40
    projector.bridge_ids[1::2, 1] = torch.arange(1, vocab, 2) + 41
    projector.bridge_counts.copy_(1 + (torch.arange(vocab) % 2))
    return model, processor


def test_transcript_config_rules():
    from conftest import tiny_text_config, tiny_whisper_config

    with pytest.raises(ValueError, match="Whisper audio_config and audio_padding='window'"):
        SaladConfig(text_config=tiny_text_config(300), audio_config=tiny_whisper_config(), adapter_type="transcript",
                    audio_padding="none", transcript_prompt_ids=[2], stack_factor=25)
    with pytest.raises(ValueError, match="raise stack_factor"):
        SaladConfig(text_config=tiny_text_config(300), audio_config=tiny_whisper_config(), adapter_type="transcript",
                    transcript_prompt_ids=[2], stack_factor=4)


@pytest.mark.parametrize("seconds", [0.3, 2.0, 35.0])
def test_placeholders_match_slots_and_precomputed_path(seconds):
    model, processor = tiny_transcript_salad()
    clip = sine(seconds)
    inputs = processor(text=["say <|audio|> ok"], audio=[clip], sampling_rate=16000)
    placeholders = int((inputs["input_ids"] == processor.audio_token_id).sum())
    assert placeholders == processor.num_audio_tokens(len(clip))
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        assert int(mask.sum()) == placeholders
        assert sum(processor.num_audio_tokens_from_states(int(m.sum())) for m in mask) == placeholders
        raw = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
        cached = model.get_audio_features(audio_encoder_states=states, audio_encoder_mask=mask)
        torch.testing.assert_close(raw, cached)
        logits = model(**inputs).logits
        logits_cached = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                              audio_encoder_states=states, audio_encoder_mask=mask).logits
    torch.testing.assert_close(logits, logits_cached)


def test_untrained_slots_hold_bridged_embeddings_and_filler():
    model, processor = tiny_transcript_salad()
    inputs = processor(text=["<|audio|>"], audio=[sine(2.0)], sampling_rate=16000)
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        features = model.get_audio_features(audio_encoder_states=states, audio_encoder_mask=mask)
    token_ids = states[0, : int(mask.sum()), -1].long() - 1
    table = model.get_input_embeddings().weight
    for slot, whisper_id in enumerate(token_ids.tolist()):
        if whisper_id < 0:  # past the transcript: the (zero-initialized) filler
            assert torch.count_nonzero(features[slot]) == 0
            continue
        pieces = [whisper_id + 40] + ([whisper_id + 41] if whisper_id % 2 else [])
        torch.testing.assert_close(features[slot], table[pieces].mean(0))


def test_greedy_decode_respects_slot_budget_and_eos():
    model, _ = tiny_transcript_salad()
    encoder_states = torch.randn(3, 1500, 32)
    hidden, token_ids = greedy_decode_slots(model.audio_tower, encoder_states, torch.tensor([1, 4, 7]), [2], 1)
    assert token_ids.shape == (3, 7) and hidden.shape == (3, 7, 32)
    assert (token_ids[0, 1:] == -1).all() and (token_ids[1, 4:] == -1).all()
    assert not (token_ids == 1).any()  # end-of-text is never a slot
    filled = token_ids >= 0
    # a row stops for good once it ends: no token after the first empty slot
    assert torch.equal(filled, filled.cumprod(-1).bool())


def test_correction_and_filler_train():
    model, processor = tiny_transcript_salad()
    inputs = processor(text=["a <|audio|> b"], audio=[sine(1.0)], sampling_rate=16000)
    loss = model(**inputs).logits.float().pow(2).mean()
    loss.backward()
    projector = model.multi_modal_projector
    assert projector.down.weight.grad is not None and projector.down.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.audio_tower.parameters())


def test_slot_rule():
    frames = torch.tensor([1, 10, 11, 150, 1500])
    assert transcript_slots(frames, 10, 146).tolist() == [1, 1, 2, 15, 146]


def test_vocabulary_bridge_maps_token_texts():
    whisper_like = make_tiny_tokenizer(with_audio_token=False)
    llm = make_tiny_tokenizer()
    ids, counts = vocabulary_bridge(whisper_like, llm, vocab_size=len(whisper_like) + 3, max_pieces=2)
    byte_a = whisper_like.convert_tokens_to_ids("a")
    assert counts[byte_a] == 1 and ids[byte_a, 0] == llm.convert_tokens_to_ids("a")
    for special in whisper_like.all_special_ids:
        assert counts[special] == 0
    assert (counts[len(whisper_like):] == 0).all()  # ids past the tokenizer map to nothing


def test_transcript_model_round_trips_through_save_pretrained(tmp_path):
    from modeling_salad import SaladForCausalLM, SaladProcessor

    model, processor = tiny_transcript_salad()
    model.multi_modal_projector.filler.data.fill_(0.5)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "transcript_adapter.py").exists()
    loaded = SaladForCausalLM.from_pretrained(tmp_path).eval()
    loaded_processor = SaladProcessor.from_pretrained(tmp_path)
    assert loaded_processor.slot_states
    inputs = processor(text=["x <|audio|>"], audio=[sine(1.2)], sampling_rate=16000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    assert torch.equal(loaded.multi_modal_projector.bridge_ids, model.multi_modal_projector.bridge_ids)
