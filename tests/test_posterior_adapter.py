"""The posterior front end: expected bridged LLM embeddings under Whisper's teacher-forced slot posterior."""

import math

import pytest
import torch

from conftest import make_tiny_tokenizer, save_tiny_parts, sine, tiny_text_config, tiny_whisper_config
from modeling_salad import SaladConfig, SaladForCausalLM
from modeling_salad.builder import make_processor
from modeling_salad.posterior_adapter import (
    bridge_embeddings,
    bridge_matrix,
    full_posterior_embeddings,
    pack_posterior_states,
    spread_piece_embeddings,
    top_k_posterior,
    unpack_posterior_states,
)

EOS = 50  # Whisper ids below it are content tokens
PROMPT = [51]


def whisper_config():
    config = tiny_whisper_config()
    config.eos_token_id = config.pad_token_id = config.bos_token_id = EOS
    config.decoder_start_token_id = PROMPT[0]
    return config


def set_bridge(projector):
    """Whisper token i -> LLM tokens (i + 40, i + 41) for odd i, (i + 40,) for even i; specials map to nothing."""
    vocab = projector.bridge_ids.shape[0]
    projector.bridge_ids.zero_()
    projector.bridge_ids[:, 0] = torch.arange(vocab) + 40
    projector.bridge_ids[1::2, 1] = torch.arange(1, vocab, 2) + 41
    projector.bridge_counts.copy_(1 + (torch.arange(vocab) % 2))
    projector.bridge_counts[EOS:] = 0


def tiny_model(adapter_type="posterior", seed=0, **kwargs):
    """A random tiny posterior (or transcript) model whose Whisper has EOS content tokens; same seed, same weights."""
    from transformers import WhisperFeatureExtractor

    torch.manual_seed(seed)
    tokenizer = make_tiny_tokenizer()
    config = SaladConfig(text_config=tiny_text_config(len(tokenizer)), audio_config=whisper_config(),
                         adapter_type=adapter_type, adapter_hidden_size=32, stack_factor=25,
                         transcript_prompt_ids=PROMPT, audio_token_id=tokenizer.convert_tokens_to_ids("<|audio|>"),
                         **kwargs)
    model = SaladForCausalLM(config).eval()
    set_bridge(model.multi_modal_projector)
    return model, make_processor(tokenizer, WhisperFeatureExtractor(feature_size=80), config)


def transcript_twin(posterior):
    """The transcript adapter with the posterior model's encoder, decoder and LLM (its correction at zero)."""
    model, _ = tiny_model("transcript")
    model.audio_tower.encoder.load_state_dict(posterior.audio_tower.state_dict())
    model.audio_tower.decoder.load_state_dict(posterior.multi_modal_projector.decoder.state_dict())
    model.language_model.load_state_dict(posterior.language_model.state_dict())
    return model


def speech_inputs(processor, seconds=(1.0,), text=None):
    text = text or ["say <|audio|> ok"] * len(seconds)
    clips = [sine(s, seed=i, freq=300 + 90 * i) for i, s in enumerate(seconds)]
    return processor(text=text, audio=clips, sampling_rate=16000)


@pytest.mark.parametrize("config", [dict(posterior_temperature=0.0),
                                    dict(posterior_temperature=1e-7, posterior_top_k=16),
                                    dict(posterior_temperature=1e-7, posterior_top_k=0)],
                         ids=["argmax", "tiny-temperature", "tiny-temperature-full-vocab"])
def test_cold_posterior_equals_transcript_adapter(config):
    model, processor = tiny_model(**config)
    twin = transcript_twin(model)
    inputs = speech_inputs(processor, (0.7, 2.0))
    with torch.no_grad():
        posterior_embeds, _ = model.embed_inputs(inputs["input_ids"], inputs["input_features"],
                                                 inputs["input_features_mask"])
        transcript_embeds, _ = twin.embed_inputs(inputs["input_ids"], inputs["input_features"],
                                                 inputs["input_features_mask"])
        _, token_ids, _ = unpack_posterior_states(*model.encode_audio(inputs["input_features"],
                                                                      inputs["input_features_mask"]), 1500)
    assert (token_ids >= 0).sum() > 3  # the clips hold real tokens, not only filler
    if config.get("posterior_top_k", 0) or config["posterior_temperature"] == 0:
        assert torch.equal(posterior_embeds, transcript_embeds)
    else:  # the sparse-matrix product sums in another order
        torch.testing.assert_close(posterior_embeds, transcript_embeds, rtol=1e-6, atol=1e-6)


def test_warm_posterior_differs_and_gradients_reach_decoder_and_temperature():
    model, processor = tiny_model(posterior_temperature=2.0)
    twin = transcript_twin(model)
    inputs = speech_inputs(processor, (1.5,))
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, twin(**inputs).logits)
    model.train()
    model(**inputs).logits.float().pow(2).mean().backward()
    projector = model.multi_modal_projector
    assert projector.log_temperature.grad is not None and projector.log_temperature.grad.abs() > 0
    for name in ("layers.0.self_attn.q_proj.weight", "layers.0.encoder_attn.v_proj.weight", "embed_tokens.weight"):
        grad = projector.decoder.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.audio_tower.parameters())  # the encoder stays frozen


@pytest.mark.parametrize("seconds", [0.3, 2.0, 35.0])
def test_slot_count_from_length_and_precomputed_states(seconds):
    model, processor = tiny_model()
    inputs = speech_inputs(processor, (seconds,))
    placeholders = int((inputs["input_ids"] == processor.audio_token_id).sum())
    assert placeholders == processor.num_audio_tokens(int(round(seconds * 16000)))
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        # what the encoder-state caches keep per chunk: the rows of the mask
        rows = [s[m.bool()] for s, m in zip(states, mask)]
        assert sum(processor.num_audio_tokens_from_states(r.shape[0]) for r in rows) == placeholders
        logits = model(**inputs).logits
        cached = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       audio_encoder_states=states, audio_encoder_mask=mask).logits
    torch.testing.assert_close(logits, cached)


@pytest.mark.parametrize("config", [dict(), dict(posterior_top_k=4, posterior_pieces="spread",
                                                  posterior_fillers="start"),
                                    dict(posterior_top_k=4, posterior_pieces="spread", posterior_fillers="start",
                                         posterior_hide_fillers=True)],
                         ids=["mean", "spread-fillers-first", "spread-hidden-fillers"])
def test_batch_equals_single_and_left_equals_right_padding(config):
    model, processor = tiny_model(posterior_temperature=1.5, **config)
    seconds = (0.6, 2.4, 1.1)
    texts = ["a <|audio|> b", "longer text <|audio|> here c", "<|audio|>"]
    with torch.no_grad():
        singles = [model(**speech_inputs(processor, (s,), [t])).logits[0] for s, t in zip(seconds, texts)]
        for side in ("right", "left"):
            processor.tokenizer.padding_side = side
            batch = speech_inputs(processor, seconds, texts)
            logits = model(**batch).logits
            for i, single in enumerate(singles):
                keep = batch["attention_mask"][i].bool()
                torch.testing.assert_close(logits[i][keep], single, rtol=1e-4, atol=1e-4)


def test_pack_unpack_round_trip():
    encoder = torch.randn(2, 6, 3)
    token_ids = torch.tensor([[4, 7, -1], [9, -1, -1]])
    states, mask = pack_posterior_states(encoder, token_ids, torch.tensor([3, 1]))
    assert states.shape == (2, 9, 4) and mask.sum(-1).tolist() == [9, 7]
    back, ids, slot_mask = unpack_posterior_states(states, mask, 6)
    assert torch.equal(back, encoder) and torch.equal(ids, token_ids)
    assert slot_mask.tolist() == [[True, True, True], [True, False, False]]
    with pytest.raises(ValueError, match="window rows"):
        unpack_posterior_states(states[:, :6], mask[:, :6], 6)


def test_top_k_and_full_vocabulary_expectations_against_brute_force():
    torch.manual_seed(0)
    logits, temperature = torch.randn(5, 12), torch.tensor(0.7)
    embedding = torch.nn.Embedding(30, 4)
    ids = torch.randint(0, 30, (12, 3))
    counts = torch.randint(0, 4, (12,))
    pieces = [embedding.weight[ids[v, : counts[v]]].mean(0) if counts[v] else torch.zeros(4) for v in range(12)]
    table = torch.stack(pieces)
    probs = torch.softmax(logits / temperature, -1)
    with torch.no_grad():
        full = full_posterior_embeddings(probs, bridge_matrix(ids, counts, 12, 30), embedding.weight)
        torch.testing.assert_close(full, probs @ table)
        torch.testing.assert_close(bridge_embeddings(torch.arange(12), ids, counts, embedding), table)
        weights, candidates = top_k_posterior(logits, temperature, 3)
        top = logits.topk(3).indices
        expected = torch.softmax(logits.gather(1, top) / temperature, -1)
        assert torch.equal(candidates, top)
        torch.testing.assert_close(weights, expected)
        all_weights, _ = top_k_posterior(logits, temperature, 0)
        torch.testing.assert_close(all_weights, probs)


def test_first_piece_mode_uses_the_first_llm_piece():
    model, processor = tiny_model(posterior_temperature=0.0, posterior_pieces="first")
    inputs = speech_inputs(processor, (2.0,), ["<|audio|>"])
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        features = model.get_audio_features(audio_encoder_states=states, audio_encoder_mask=mask)
    _, token_ids, _ = unpack_posterior_states(states, mask, 1500)
    table = model.get_input_embeddings().weight
    for slot, whisper_id in enumerate(token_ids[0].tolist()):
        expected = table[whisper_id + 40] if whisper_id >= 0 else torch.zeros_like(table[0])
        torch.testing.assert_close(features[slot], expected)


def slot_features(model, processor, seconds=2.0):
    inputs = speech_inputs(processor, (seconds,), ["<|audio|>"])
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        features = model.get_audio_features(audio_encoder_states=states, audio_encoder_mask=mask)
    _, token_ids, _ = unpack_posterior_states(states, mask, 1500)
    return features, token_ids[0].tolist()


def expected_spread(projector, table, token_ids, num_slots):
    """Brute force: the LLM pieces of every greedy token in order, cut to the slots, the filler after them."""
    pieces = [table[int(projector.bridge_ids[t, j])] for t in token_ids if t >= 0
              for j in range(max(int(projector.bridge_counts[t]), 1))][:num_slots]
    return torch.stack(pieces + [projector.filler.detach()] * (num_slots - len(pieces)))


def test_spread_mode_gives_each_llm_piece_its_own_slot():
    model, processor = tiny_model(posterior_temperature=0.0, posterior_pieces="spread")
    projector, table = model.multi_modal_projector, model.get_input_embeddings().weight
    with torch.no_grad():
        projector.filler.normal_()
    features, token_ids = slot_features(model, processor)
    assert sum(t >= 0 for t in token_ids) > 3 and any(t % 2 for t in token_ids if t >= 0)  # two-piece tokens occur
    torch.testing.assert_close(features, expected_spread(projector, table, token_ids, len(token_ids)))


def test_spread_mode_at_a_cold_temperature_equals_argmax_and_stays_differentiable():
    cold, processor = tiny_model(posterior_temperature=1e-7, posterior_top_k=4, posterior_pieces="spread")
    argmax, _ = tiny_model(posterior_temperature=0.0, posterior_pieces="spread")
    torch.testing.assert_close(slot_features(cold, processor)[0], slot_features(argmax, processor)[0])
    warm, _ = tiny_model(posterior_temperature=2.0, posterior_top_k=4, posterior_pieces="spread")
    warm.train()
    warm(**speech_inputs(processor, (1.5,))).logits.float().pow(2).mean().backward()
    grad = warm.multi_modal_projector.decoder.get_parameter("layers.0.self_attn.q_proj.weight").grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("align_end", [False, True])
def test_spread_candidates_offer_their_first_or_last_pieces_against_brute_force(align_end):
    """Greedy tokens of 1 and 3 LLM pieces, candidates of 0-3 pieces: piece j of the greedy token mixes the
    candidates' piece j (counted from the start) or piece j - (greedy pieces - candidate pieces) (from the end),
    clamped to the candidate's pieces; a candidate with none gives 0."""
    table = torch.nn.Embedding(20, 4)
    bridge_ids = torch.tensor([[1, 2, 3], [4, 0, 0], [5, 6, 0], [0, 0, 0], [7, 8, 9]])
    bridge_counts = torch.tensor([3, 1, 2, 0, 3])
    greedy, candidates = torch.tensor([1, 4]), torch.tensor([[1, 2, 3, 4], [4, 1, 2, 3]])
    weights = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.5, 0.2, 0.2, 0.1]])
    values, owner, piece = spread_piece_embeddings(weights, candidates, greedy, bridge_ids, bridge_counts, table,
                                                   align_end)
    assert owner.tolist() == [0, 1, 1, 1] and piece.tolist() == [0, 0, 1, 2]
    for p in range(4):
        r, j = int(owner[p]), int(piece[p])
        size = int(bridge_counts[greedy[r]].clamp(min=1))
        expected = torch.zeros(4)
        for weight, c in zip(weights[r], candidates[r].tolist()):
            count = int(bridge_counts[c])
            if count:
                k = j + (count - size if align_end else 0)
                expected += weight * table.weight[bridge_ids[c, min(max(k, 0), count - 1)]]
        torch.testing.assert_close(values[p], expected)
    if align_end:  # the one-piece slot of token 1 gets the last piece of the three-piece candidate 0
        greedy_one = spread_piece_embeddings(torch.tensor([[0.0, 1.0]]), torch.tensor([[1, 0]]), greedy[:1],
                                             bridge_ids, bridge_counts, table, True)[0]
        torch.testing.assert_close(greedy_one[0], table.weight[3])


def test_piece_alignment_leaves_argmax_mode_unchanged_and_training_temperature_applies_in_training_only():
    start, processor = tiny_model(posterior_temperature=0.0, posterior_pieces="spread")
    end, _ = tiny_model(posterior_temperature=0.0, posterior_pieces="spread", posterior_piece_alignment="end")
    torch.testing.assert_close(slot_features(start, processor)[0], slot_features(end, processor)[0])
    model, _ = tiny_model(posterior_temperature=0.1, posterior_top_k=8, posterior_pieces="spread",
                          posterior_training_temperature=1.0)
    projector = model.multi_modal_projector
    assert math.isclose(float(projector.temperature.detach()), 0.1, rel_tol=1e-6)
    model.train()
    assert float(projector.temperature) == 1.0
    warm, _ = tiny_model(posterior_temperature=1.0, posterior_top_k=8, posterior_pieces="spread")
    inputs = speech_inputs(processor, (1.5,))
    warm.train()
    torch.testing.assert_close(model(**inputs).logits, warm(**inputs).logits)


@pytest.mark.parametrize("pieces", ["mean", "spread"])
def test_fillers_first_right_aligns_the_transcript(pieces):
    """Chunks with 2 and 3 greedy tokens (one of two LLM pieces each) in 6 and 5 real slots: the same inputs, the
    fillers moved before them."""
    token_ids, num_slots = torch.tensor([[4, 7, -1, -1, -1, -1], [2, 3, 8, -1, -1, -1]]), torch.tensor([6, 5])
    outputs = {}
    for fillers in ("end", "start"):
        model, _ = tiny_model(posterior_temperature=0.0, posterior_pieces=pieces, posterior_fillers=fillers)
        projector = model.multi_modal_projector
        with torch.no_grad():
            projector.filler.fill_(0.5)
            states, mask = pack_posterior_states(torch.randn(2, 1500, 8), token_ids, num_slots)
            outputs[fillers] = projector(states, mask, model.get_input_embeddings())
    for row, real in enumerate(num_slots.tolist()):
        at_end, at_start = outputs["end"][row, :real], outputs["start"][row, :real]
        used = int((~(at_end == 0.5).all(-1)).sum())
        assert used == (2 if row == 0 else 3) + (pieces == "spread")
        torch.testing.assert_close(at_start[real - used:], at_end[:used])
        assert bool((at_start[: real - used] == 0.5).all()) and bool((at_end[used:] == 0.5).all())


HIDDEN_FILLER_TOKENS = [4, 7, 2, 9]  # Whisper ids: 6 LLM pieces (44; 47, 48; 42; 49, 50) in a 12-slot chunk


def hidden_filler_inputs(processor, text="a <|audio|> b"):
    """`input_ids [1, L]` with 12 placeholders and packed states of a chunk holding `HIDDEN_FILLER_TOKENS`."""
    from evaluation.scorer import expand_audio_placeholder

    token_ids = torch.tensor([HIDDEN_FILLER_TOKENS + [-1] * 8])
    states, mask = pack_posterior_states(torch.randn(1, 1500, 8), token_ids, torch.tensor([12]))
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = expand_audio_placeholder(ids, processor.tokenizer, 12)
    return torch.tensor([ids]), {"audio_encoder_states": states, "audio_encoder_mask": mask}


def transcript_text_ids(processor, input_ids):
    """The same prompt with the 12 placeholders replaced by the transcript's 6 LLM pieces, as plain text."""
    ids = input_ids[0].tolist()
    at = ids.index(processor.audio_token_id)
    return torch.tensor([ids[:at] + [44, 47, 48, 42, 49, 50] + ids[at + 12:]])


def hidden_filler_model():
    model, processor = tiny_model(posterior_temperature=0.0, posterior_pieces="spread", posterior_fillers="start",
                                  posterior_hide_fillers=True)
    with torch.no_grad():
        model.multi_modal_projector.filler.normal_()  # a filler the LLM would notice, were it not hidden
    return model, processor


def test_hidden_fillers_read_exactly_like_the_transcript_text():
    model, processor = hidden_filler_model()
    input_ids, audio = hidden_filler_inputs(processor)
    text_ids = transcript_text_ids(processor, input_ids)
    with torch.no_grad():
        output = model(input_ids=input_ids, **audio)
        text_logits = model.language_model(input_ids=text_ids).logits
    at = input_ids[0].tolist().index(processor.audio_token_id)
    visible = output.attention_mask[0].bool()
    assert visible.sum() == text_ids.shape[1] and not visible[at:at + 6].any()  # the 6 fillers come first
    torch.testing.assert_close(output.logits[0][visible], text_logits[0], rtol=1e-5, atol=1e-5)
    assert output.position_ids[0][visible].tolist() == list(range(text_ids.shape[1]))
    shown, _ = tiny_model(posterior_temperature=0.0, posterior_pieces="spread", posterior_fillers="start")
    shown.load_state_dict(model.state_dict())
    with torch.no_grad():  # without hiding, the same weights read the fillers
        assert not torch.allclose(shown(input_ids=input_ids, **audio).logits[0, -1], text_logits[0, -1])


def test_hidden_fillers_generate_and_cached_scoring_continue_like_the_transcript_text():
    from evaluation.scorer import score_continuations

    model, processor = hidden_filler_model()
    input_ids, audio = hidden_filler_inputs(processor)
    text_ids = transcript_text_ids(processor, input_ids)
    with torch.no_grad():
        generated = model.generate(input_ids=input_ids, **audio, max_new_tokens=6, do_sample=False)
        reference = model.language_model.generate(input_ids=text_ids, max_new_tokens=6, do_sample=False)
    assert generated[0, input_ids.shape[1]:].tolist() == reference[0, text_ids.shape[1]:].tolist()
    choices = [[60, 61, 62], [70], [80, 81]]
    scores = score_continuations(model, input_ids, choices, audio)
    for got, want in zip(scores, score_continuations(model.language_model, text_ids, choices)):
        assert got[1] == want[1] and math.isclose(got[0], want[0], rel_tol=1e-5, abs_tol=1e-5)
    uncached = score_continuations(model, input_ids, choices, audio, share_prefix=False)
    assert all(math.isclose(a[0], b[0], rel_tol=1e-5, abs_tol=1e-5) for a, b in zip(scores, uncached))


def test_hidden_fillers_score_in_a_left_padded_batch_as_one_by_one():
    from evaluation.scorer import concat_audio_inputs, score_continuations, score_continuations_batch

    model, processor = hidden_filler_model()
    prompts = [hidden_filler_inputs(processor), hidden_filler_inputs(processor, "a b a b a <|audio|> b")]
    token_ids = torch.tensor([[5, 3] + [-1] * 10])  # another transcript: 2 pieces, 10 hidden fillers
    prompts[1][1].update(zip(("audio_encoder_states", "audio_encoder_mask"),
                             pack_posterior_states(torch.randn(1, 1500, 8), token_ids, torch.tensor([12]))))
    choices = [[[60, 61, 62], [70]], [[80, 81], [70], [90, 91, 92]]]
    batch = score_continuations_batch(model, [ids[0].tolist() for ids, _ in prompts], choices,
                                      concat_audio_inputs([audio for _, audio in prompts]))
    for (ids, audio), item_choices, got in zip(prompts, choices, batch):
        for (logprob, greedy), (want, want_greedy) in zip(got, score_continuations(model, ids, item_choices, audio)):
            assert greedy == want_greedy and math.isclose(logprob, want, rel_tol=1e-5, abs_tol=1e-5)


def test_build_salad_starts_the_filler_at_the_embedding_of_posterior_filler_text(tmp_path):
    from modeling_salad import build_salad

    save_tiny_parts(tmp_path)
    parts = (str(tmp_path / "llm"), str(tmp_path / "whisper"))
    model, processor = build_salad(*parts, adapter_type="posterior", stack_factor=25, posterior_filler_text=" ")
    (space,) = processor.tokenizer(" ", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(model.multi_modal_projector.filler, model.get_input_embeddings().weight[space])
    plain, _ = build_salad(*parts, adapter_type="posterior", stack_factor=25)
    assert not plain.multi_modal_projector.filler.any()
    with pytest.raises(ValueError, match="must be exactly one"):
        build_salad(*parts, adapter_type="posterior", stack_factor=25, posterior_filler_text="two words")


def test_config_rules():
    with pytest.raises(ValueError, match="posterior_pieces"):
        tiny_model(posterior_pieces="last")
    with pytest.raises(ValueError, match="posterior_fillers"):
        tiny_model(posterior_fillers="middle")
    with pytest.raises(ValueError, match="posterior_fillers='start'"):
        tiny_model(posterior_hide_fillers=True)
    with pytest.raises(ValueError, match="top_k > 0"):
        tiny_model(posterior_pieces="spread", posterior_top_k=0)
    with pytest.raises(ValueError, match=">= 0"):
        tiny_model(posterior_temperature=-1.0)
    with pytest.raises(ValueError, match="posterior_piece_alignment"):
        tiny_model(posterior_piece_alignment="middle")
    with pytest.raises(ValueError, match="posterior_training_temperature"):
        tiny_model(posterior_training_temperature=0.0)
    with pytest.raises(ValueError, match="argmax mode"):
        tiny_model(posterior_temperature=0.0, posterior_training_temperature=1.0)
    with pytest.raises(ValueError, match="audio_padding='window'"):
        tiny_model(audio_padding="none")
    short_window = whisper_config()
    short_window.max_source_positions = 100
    with pytest.raises(ValueError, match="1500-frame window"):
        SaladConfig(text_config=tiny_text_config(300), audio_config=short_window, adapter_type="posterior",
                    transcript_prompt_ids=PROMPT)
    model, _ = tiny_model(posterior_temperature=0.5)
    assert math.isclose(float(model.multi_modal_projector.temperature.detach()), 0.5, rel_tol=1e-6)


def test_save_pretrained_round_trip_keeps_decoder_and_bridge(tmp_path):
    from modeling_salad import SaladProcessor

    model, processor = tiny_model(posterior_temperature=0.8)
    with torch.no_grad():
        model.multi_modal_projector.decoder.layers[0].fc1.weight.mul_(1.5)
        model.multi_modal_projector.log_temperature.fill_(-0.3)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "posterior_adapter.py").exists() and (tmp_path / "transcript_adapter.py").exists()
    loaded = SaladForCausalLM.from_pretrained(tmp_path).eval()
    loaded_processor = SaladProcessor.from_pretrained(tmp_path)
    assert loaded_processor.adapter_type == "posterior" and loaded_processor.num_audio_tokens_from_states(1507) == 7
    inputs = speech_inputs(processor, (1.2,))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    assert float(loaded.multi_modal_projector.log_temperature.detach()) == pytest.approx(-0.3)


def test_lora_on_the_decoder_trains_only_lora_weights():
    peft = pytest.importorskip("peft")
    model, processor = tiny_model(posterior_temperature=1.0)
    decoder = model.multi_modal_projector.decoder
    model.requires_grad_(False)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1", "fc2"])
    peft.inject_adapter_in_model(lora, decoder)
    for name, param in decoder.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; move it so A gets a gradient too
            torch.nn.init.normal_(param, std=0.1)
    before = model(**speech_inputs(processor, (1.0,))).logits
    before.float().pow(2).mean().backward()
    trained = [n for n, p in decoder.named_parameters() if p.grad is not None]
    assert trained and all("lora_" in n for n in trained)
    assert all(decoder.get_parameter(n).grad.abs().sum() > 0 for n in trained)


def test_remote_code_round_trip_in_isolated_subprocess(tmp_path):
    import soundfile
    from conftest import run_isolated
    from test_remote_code import LOADER

    model, processor = tiny_model(posterior_temperature=0.9)
    folder = tmp_path / "salad-posterior"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    text, audio = ["hi <|audio|>", "two <|audio|> clips <|audio|>"], [sine(0.9), sine(0.3, seed=1), sine(1.4, seed=2)]
    inputs = dict(processor(text=text, audio=audio, sampling_rate=16000))
    with torch.no_grad():
        expected = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    torch.save({**inputs, "text": text, "audio": [torch.from_numpy(a) for a in audio]}, folder / "inputs.pt")
    soundfile.write(folder / "clip.wav", audio[0], 16000)  # the loader also runs the any-to-any pipeline on it
    result = run_isolated(LOADER, folder, tmp_path)
    assert result["same_inputs"] and result["AutoModelForCausalLM_module"].startswith("transformers_modules")
    torch.testing.assert_close(result["AutoModelForCausalLM"], expected)
    assert torch.equal(result["generated"], generated)
    assert result["pipeline_class"].startswith("transformers_modules")


def test_trainer_collator_takes_cached_posterior_states_and_trains_the_decoder():
    from trainers.collator import SpanDocumentCollator
    from trainers.diagnostics import logits_at_positions

    model, processor = tiny_model(posterior_temperature=1.0)
    features = processor.extract_audio_features([sine(1.3)])
    with torch.no_grad():
        states, mask = model.encode_audio(features["input_features"], features["input_features_mask"])
    cached = states[0][mask[0]].numpy()  # what the encoder-state cache stores for the clip
    document = {"id": "d", "spans": [{"text": "a spoken bit", "audio": {"encoder_states": cached}},
                                     {"text": " then text", "audio": None}]}
    batch = SpanDocumentCollator(processor, speech_policy="all")([document])
    assert int((batch["input_ids"] == processor.audio_token_id).sum()) == processor.num_audio_tokens(len(sine(1.3)))
    model.train()
    logits = logits_at_positions(model, batch["student_positions"], input_ids=batch["input_ids"],
                                 attention_mask=batch["attention_mask"], use_cache=False,
                                 audio_encoder_states=batch["audio_encoder_states"],
                                 audio_encoder_mask=batch["audio_encoder_mask"])
    logits.float().pow(2).mean().backward()
    grad = model.multi_modal_projector.decoder.layers[0].fc2.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_cached_posterior_states_go_stale_when_the_decoder_trains():
    from spans import encoder_identity

    model, processor = tiny_model(posterior_temperature=1.0)
    before = encoder_identity(model, processor)
    with torch.no_grad():
        next(model.multi_modal_projector.decoder.parameters()).add_(0.5)
    assert encoder_identity(model, processor) != before


def test_a_frame_adapter_training_keeps_its_cached_encoder_states():
    from conftest import make_tiny_salad
    from spans import encoder_identity

    model, processor = make_tiny_salad(adapter_type="mlp")
    before = encoder_identity(model, processor)
    with torch.no_grad():
        next(model.multi_modal_projector.parameters()).add_(0.5)
    assert encoder_identity(model, processor) == before
