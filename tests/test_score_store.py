"""Scores and transcripts kept on disk: a second process reads them, a changed model or prompt never does."""

import sqlite3

import numpy as np
import pytest
import torch
from conftest import make_tiny_tokenizer, sine, tiny_text_config

import evaluation.scorer as scorer_module
from evaluation.api import EvalCache, EvalConfig, evaluate_model
from evaluation.cascade import WhisperASR
from evaluation.score_store import ScoreStore
from datasets_scripts.asr_check import WhisperTranscriber


def make_items(n):
    return [{"id": f"q{i}", "question": f"What comes after {i}?", "choices": [str(i + 1), str(i + 2)], "answer": 0}
            for i in range(n)]


@pytest.fixture
def counted_scoring(monkeypatch):
    calls = []
    original = scorer_module.score_continuations_batch

    def counting(model, prefixes, *args, **kwargs):  # one call per item scored
        calls.extend([type(model).__name__] * len(prefixes))
        return original(model, prefixes, *args, **kwargs)

    monkeypatch.setattr(scorer_module, "score_continuations_batch", counting)
    return calls


def evaluate_text(llm, tokenizer, store, items, num_fewshot=1):
    config = EvalConfig(modes="text", num_fewshot=num_fewshot, fewshot_pool_size=2, progress=False)
    result = evaluate_model(None, None, llm, tokenizer, {"count": items}, config, cache=EvalCache(store=store))
    return result["predictions"]["count"]


def test_text_scores_are_read_back_by_a_new_store_and_missed_when_weights_or_prompts_change(tmp_path,
                                                                                           counted_scoring):
    torch.manual_seed(0)
    tokenizer = make_tiny_tokenizer()
    from transformers import LlamaForCausalLM

    llm = LlamaForCausalLM(tiny_text_config(len(tokenizer))).eval()
    path = tmp_path / "scores.sqlite"
    first = evaluate_text(llm, tokenizer, ScoreStore(path), make_items(6))
    assert len(counted_scoring) == 4 and len(ScoreStore(path)) == 4
    counted_scoring.clear()
    assert evaluate_text(llm, tokenizer, ScoreStore(path), make_items(6)) == first  # another process, same store
    assert counted_scoring == []
    evaluate_text(llm, tokenizer, ScoreStore(path), make_items(6), num_fewshot=0)  # other prompts (no pool held out)
    assert len(counted_scoring) == 6
    counted_scoring.clear()
    with torch.no_grad():
        llm.get_input_embeddings().weight.mul_(1.5)
    changed = evaluate_text(llm, tokenizer, ScoreStore(path), make_items(6))
    assert len(counted_scoring) == 4 and changed != first


def test_a_copied_or_moved_model_keeps_its_stored_scores(tmp_path, counted_scoring):
    torch.manual_seed(0)
    tokenizer = make_tiny_tokenizer()
    from transformers import LlamaForCausalLM

    LlamaForCausalLM(tiny_text_config(len(tokenizer))).save_pretrained(tmp_path / "here")
    LlamaForCausalLM.from_pretrained(tmp_path / "here").save_pretrained(tmp_path / "there")
    store = ScoreStore(tmp_path / "scores.sqlite")
    first = evaluate_text(LlamaForCausalLM.from_pretrained(tmp_path / "here").eval(), tokenizer, store, make_items(4))
    counted_scoring.clear()
    moved = LlamaForCausalLM.from_pretrained(tmp_path / "there").eval()
    assert moved.config.to_dict()["_name_or_path"].endswith("there")
    assert evaluate_text(moved, tokenizer, store, make_items(4)) == first and counted_scoring == []


def test_speech_scores_are_never_stored(tmp_path, tiny_salad, counted_scoring):
    model, processor = tiny_salad()
    items = [{**item, "audio": {"array": sine(0.6 + 0.1 * i, seed=i), "sampling_rate": 16000}}
             for i, item in enumerate(make_items(5))]
    store = ScoreStore(tmp_path / "scores.sqlite")
    config = EvalConfig(modes="speech", num_fewshot=1, fewshot_pool_size=2, progress=False)
    for _ in range(2):
        evaluate_model(model, processor, None, None, {"count": items}, config, cache=EvalCache(store=store))
    assert len(counted_scoring) == 6 and len(store) == 0


def test_salad_text_scores_are_stored_under_the_llm_so_a_new_checkpoint_of_the_adapter_reads_them(
        tmp_path, tiny_salad, counted_scoring):
    model, processor = tiny_salad()
    store = ScoreStore(tmp_path / "scores.sqlite")
    config = EvalConfig(modes="text", num_fewshot=1, fewshot_pool_size=2, progress=False)
    evaluate = lambda: evaluate_model(model, processor, None, None, {"count": make_items(5)}, config,
                                      cache=EvalCache(store=store))["predictions"]["count"]
    first = evaluate()
    assert len(counted_scoring) == 3 and set(counted_scoring) == {type(model.language_model).__name__}
    counted_scoring.clear()
    with torch.no_grad():  # the adapter trained; a new process (new cache) evaluates it
        next(model.multi_modal_projector.parameters()).add_(1.0)
    assert evaluate() == first and counted_scoring == []
    with torch.no_grad():  # the LLM trained: scored anew
        model.language_model.get_input_embeddings().weight.mul_(1.5)
    evaluate()
    assert len(counted_scoring) == 3


def test_transcripts_are_stored_per_clip_samples_and_asr_weights(tmp_path, monkeypatch):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    heard = []

    def transcribe(asr, clips, sampling_rate=16000):
        heard.extend(len(c) for c in clips)
        return [f"heard {len(c)}" for c in clips]

    monkeypatch.setattr(WhisperTranscriber, "transcribe", transcribe)
    config = WhisperConfig(vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_source_positions=8,
                           max_target_positions=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1)
    whisper = WhisperForConditionalGeneration(config)
    path = tmp_path / "scores.sqlite"
    a, b = sine(0.5, seed=1), sine(0.7, seed=2)
    first = WhisperASR(whisper, None, store=ScoreStore(path)).transcribe([a, b], keys=["a", "b"])
    assert len(heard) == 2
    again = WhisperASR(whisper, None, store=ScoreStore(path)).transcribe([b, a, sine(0.9, seed=3)])
    assert again[:2] == first[::-1] and len(heard) == 3  # only the new clip was transcribed
    with torch.no_grad():
        whisper.model.decoder.embed_tokens.weight.add_(1.0)
    WhisperASR(whisper, None, store=ScoreStore(path)).transcribe([a])
    assert len(heard) == 4


def test_a_file_that_is_not_a_store_is_named(tmp_path):
    bad = tmp_path / "scores.sqlite"
    bad.write_text("not a database, just words " * 40)
    with pytest.raises(ValueError, match="scores.sqlite.*not a readable sqlite file"):
        ScoreStore(bad)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="is not a file"):
        ScoreStore(tmp_path / "folder")
    store = ScoreStore(tmp_path / "new" / "scores.sqlite")
    store.put("loglikelihood", ["m", [1, 2]], [-1.5, -0.25])
    assert store.get("loglikelihood", ["m", [1, 2]]) == [-1.5, -0.25]
    assert store.get("transcript", ["m", [1, 2]]) is None
    assert sqlite3.connect(tmp_path / "new" / "scores.sqlite").execute("SELECT kind FROM entries").fetchall() == [
        ("loglikelihood",)]
