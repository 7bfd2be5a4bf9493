"""The posterior front end's biases on Whisper's logits: the learned per-token bias, the one numeral scalar, and the
symbols Whisper's `generate` suppresses, in greedy decoding and in the slot posterior alike."""

import pytest
import torch

from conftest import save_tiny_parts
from modeling_salad import SaladForCausalLM
from modeling_salad.posterior_adapter import top_k_posterior, unpack_posterior_states
from test_posterior_adapter import EOS, speech_inputs, tiny_model


def test_logit_bias_starts_at_zero_moves_greedy_and_posterior_alike_and_trains():
    plain, processor = tiny_model(posterior_temperature=0.5, posterior_top_k=8)
    biased, _ = tiny_model(posterior_temperature=0.5, posterior_top_k=8, posterior_logit_bias=True)
    inputs = speech_inputs(processor, (1.5,))
    projector = biased.multi_modal_projector
    assert projector.logit_bias.shape == (EOS,) and not projector.logit_bias.any()
    with torch.no_grad():
        torch.testing.assert_close(biased(**inputs).logits, plain(**inputs).logits)  # zero bias: no change
        states, mask = biased.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        encoder, tokens, slot_mask = unpack_posterior_states(states, mask, 1500)
        favoured = int(tokens[tokens >= 0][0]) + 1  # a content token the greedy transcript does not start with
        projector.logit_bias[favoured] = 1e4
        states, mask = biased.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        _, biased_tokens, _ = unpack_posterior_states(states, mask, 1500)
        assert bool((biased_tokens[tokens >= 0] == favoured).all())  # greedy decoding reads the bias
        logits = projector._slot_logits(encoder, biased_tokens)
        assert bool((logits[biased_tokens >= 0].argmax(-1) == favoured).all())  # and so does the slot posterior
        projector.logit_bias.zero_()
    biased.train()
    biased(**inputs).logits.float().pow(2).mean().backward()
    assert projector.logit_bias.grad is not None and projector.logit_bias.grad.abs().sum() > 0


def test_numeral_token_mask_marks_tokens_written_with_digits_only():
    from types import SimpleNamespace

    from modeling_salad.posterior_adapter import numeral_token_mask

    texts = [" 3", "7", " 12", "three", " 3a", " ", "", "3 ", "½"]
    tokenizer = SimpleNamespace(batch_decode=lambda ids: [texts[i[0]] for i in ids])
    assert numeral_token_mask(tokenizer, len(texts)).tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_numeral_bias_is_one_scalar_on_the_numeral_tokens_that_moves_greedy_and_posterior_and_trains(tmp_path):
    plain, processor = tiny_model(posterior_temperature=0.5, posterior_top_k=8)
    model, _ = tiny_model(posterior_temperature=0.5, posterior_top_k=8, posterior_numeral_bias=True)
    projector = model.multi_modal_projector
    assert projector.numeral_bias.shape == () and float(projector.numeral_bias.detach()) == 0
    inputs = speech_inputs(processor, (1.5,))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, plain(**inputs).logits)  # zero bias: no change
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        encoder, tokens, _ = unpack_posterior_states(states, mask, 1500)
        numerals = [int(tokens[tokens >= 0][0]) + 1, int(tokens[tokens >= 0][0]) + 2]
        projector.numeral_tokens[numerals] = 1.0
        projector.numeral_bias.fill_(1e4)
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        _, biased, _ = unpack_posterior_states(states, mask, 1500)
        assert set(biased[tokens >= 0].tolist()) <= set(numerals)  # greedy decoding reads the bias
        top = projector._slot_logits(encoder, biased)[biased >= 0].argmax(-1)
        assert set(top.tolist()) <= set(numerals)  # and so does the slot posterior
        projector.numeral_bias.fill_(0.3)
    model.save_pretrained(tmp_path)
    loaded = SaladForCausalLM.from_pretrained(tmp_path).multi_modal_projector
    assert float(loaded.numeral_bias.detach()) == pytest.approx(0.3) and loaded.numeral_tokens[numerals].tolist() == [1, 1]
    model.train()
    model(**inputs).logits.float().pow(2).mean().backward()
    assert projector.numeral_bias.grad is not None and float(projector.numeral_bias.grad) != 0


def test_build_salad_marks_whisper_numeral_tokens_for_the_numeral_bias(tmp_path):
    from modeling_salad import build_salad

    from transformers import AutoConfig

    save_tiny_parts(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path / "whisper")
    config.eos_token_id = 60  # content tokens: the first 60 of the byte-level alphabet, the digits among them
    config.save_pretrained(tmp_path / "whisper")
    model, processor = build_salad(str(tmp_path / "llm"), str(tmp_path / "whisper"), adapter_type="posterior",
                                   stack_factor=25, posterior_numeral_bias=True)
    marked = model.multi_modal_projector.numeral_tokens.nonzero()[:, 0].tolist()
    assert marked and all(processor.tokenizer.decode([i]).strip().isdigit() for i in marked)
    assert len(marked) == 10  # the tiny byte-level tokenizer's digits "0".."9"



def test_suppressed_tokens_are_never_written_by_greedy_decoding_or_the_slot_posterior(tmp_path):
    plain, processor = tiny_model(posterior_temperature=0.5, posterior_top_k=8)
    inputs = speech_inputs(processor, (1.5,))
    with torch.no_grad():
        states, mask = plain.encode_audio(inputs["input_features"], inputs["input_features_mask"])
    _, tokens, _ = unpack_posterior_states(states, mask, 1500)
    written = sorted(set(tokens[tokens >= 0].tolist()))
    suppressed = written[:1] + [EOS + 3]  # one token the plain front end writes, one special token (ignored)
    model, _ = tiny_model(posterior_temperature=0.5, posterior_top_k=8, posterior_suppress_tokens=True,
                          whisper_suppress_tokens=suppressed)
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        encoder, kept, _ = unpack_posterior_states(states, mask, 1500)
        assert kept[kept >= 0].numel() and suppressed[0] not in kept[kept >= 0].tolist()
        weights, candidates = top_k_posterior(model.multi_modal_projector._slot_logits(encoder, kept)[kept >= 0],
                                              torch.tensor(0.5), 8)
        assert float(weights[candidates == suppressed[0]].sum()) == 0
    model.save_pretrained(tmp_path)
    loaded = SaladForCausalLM.from_pretrained(tmp_path).multi_modal_projector
    assert torch.isinf(loaded.suppress_mask).nonzero()[:, 0].tolist() == suppressed[:1]
    with pytest.raises(ValueError, match="needs `whisper_suppress_tokens`"):
        tiny_model(posterior_suppress_tokens=True)


def test_build_salad_reads_whisper_suppress_tokens_from_the_generation_config(tmp_path):
    from transformers import AutoConfig, GenerationConfig

    from modeling_salad import build_salad
    from modeling_salad.transcript_adapter import whisper_suppress_tokens

    save_tiny_parts(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path / "whisper")
    config.eos_token_id = 60  # content tokens: the first 60 ids
    config.save_pretrained(tmp_path / "whisper")
    assert whisper_suppress_tokens(str(tmp_path / "none")) == []  # no generation config: nothing suppressed
    generation = GenerationConfig.from_pretrained(tmp_path / "whisper")
    generation.suppress_tokens = [5, 7]
    generation.save_pretrained(tmp_path / "whisper")
    model, _ = build_salad(str(tmp_path / "llm"), str(tmp_path / "whisper"), adapter_type="posterior",
                           stack_factor=25, posterior_suppress_tokens=True)
    assert model.config.whisper_suppress_tokens == [5, 7]
    assert torch.isinf(model.multi_modal_projector.suppress_mask).nonzero()[:, 0].tolist() == [5, 7]
