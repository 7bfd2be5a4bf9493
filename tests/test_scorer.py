"""Multiple-choice scorer: hand-computed log-likelihoods, shared prefix == recomputation, prompts that fit."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import make_tiny_tokenizer, sine, tiny_text_config

from evaluation.api import EvalCache, EvalConfig, evaluate_model
from evaluation.audio import speech_inputs
from spans import EncoderStatesCache
from evaluation.prompts import FewShotSampler, format_query, format_shot, question_text, split_fewshot_pool
from evaluation.scorer import ChoiceScores, MultipleChoiceScorer, continuation_logprobs


def make_items(n=12, with_context=False):
    items = []
    for i in range(n):
        item = {
            "id": f"q{i}",
            "question": f"What number comes after {i}?",
            "choices": [str(i + 1), str(i + 2), f"the number {i + 3}"],
            "answer": 0,
        }
        if with_context and i % 2:
            item["context"] = f"We count upward from {i}."
        items.append(item)
    return items


class BigramModel(torch.nn.Module):
    """Logits depend only on the current token: log p(next | current) = table[current]. No real cache needed."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.log(torch.tensor(table)))

    def forward(self, input_ids, cache=None, use_cache=None, logits_to_keep=0, **kwargs):
        logits = self.table[input_ids]
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits, cache=SimpleNamespace(batch_select_indices=lambda index: None))


@pytest.fixture
def tiny_llm():
    torch.manual_seed(0)
    tokenizer = make_tiny_tokenizer()
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(tiny_text_config(len(tokenizer))).eval(), tokenizer


def test_hand_computed_loglikelihood_with_and_without_length_normalization():
    # vocab 0..3; after token 0: p(1)=0.5, p(2)=0.4; after token 2: p(3)=0.9.
    table = [[0.05, 0.5, 0.4, 0.05], [0.25] * 4, [0.05, 0.025, 0.025, 0.9], [0.25] * 4]
    model = BigramModel(table)
    prefix = torch.tensor([[3, 0]])
    for share in (True, False):
        logprobs = continuation_logprobs(model, prefix, [[1], [2, 3]], share_prefix=share)
        assert logprobs == pytest.approx([math.log(0.5), math.log(0.4) + math.log(0.9)], abs=1e-6)
    # choice A "x" (1 char, sum -0.693) vs choice B "longer one" (10 chars, sum -1.022)
    scores = ChoiceScores("i", answer=1, logprobs=logprobs, num_tokens=[1, 2], num_chars=[1, 10])
    assert scores.prediction("none") == 0  # raw sum prefers the short choice
    assert scores.prediction("chars") == 1  # per-character normalization prefers B
    assert scores.prediction("tokens") == 1  # -0.693 vs -0.511 per token
    assert scores.normalized("chars") == pytest.approx([math.log(0.5), (math.log(0.4) + math.log(0.9)) / 10])


def test_shared_prefix_equals_per_choice_recomputation_text(tiny_llm):
    model, tokenizer = tiny_llm
    items = make_items(8, with_context=True)
    pool, scored = split_fewshot_pool(items, 3)
    fast = MultipleChoiceScorer(model, tokenizer, FewShotSampler(pool, 2), share_prefix=True)
    slow = MultipleChoiceScorer(model, tokenizer, FewShotSampler(pool, 2), share_prefix=False)
    for item in scored:
        a, b = fast.score_text(item), slow.score_text(item)
        assert a.num_shots == b.num_shots == 2
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert a.prediction() == b.prediction()


def test_shared_prefix_equals_recomputation_speech_and_matches_processor(tiny_salad):
    model, processor = tiny_salad()
    items = make_items(4)
    sampler = FewShotSampler(items[2:], 1)
    fast = MultipleChoiceScorer(model, processor.tokenizer, sampler, share_prefix=True)
    slow = MultipleChoiceScorer(model, processor.tokenizer, sampler, share_prefix=False)
    clip = sine(1.3)
    cached = speech_inputs(EncoderStatesCache(), clip, model, processor)
    features = processor.extract_audio_features([clip])
    raw = {**features, "num_placeholders": processor.num_audio_tokens(len(clip))}
    raw.pop("num_audio_tokens", None)
    a = fast.score_speech(items[0], cached)
    b = slow.score_speech(items[0], raw)
    assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    # The prompt the scorer builds equals what SaladProcessor makes from the same text and clip.
    prefix_ids, shots = fast.speech_prompt(items[0], cached["num_placeholders"])
    from evaluation.prompts import join_prompt

    text = join_prompt(shots, format_query(items[0], spoken_placeholder=processor.audio_token))
    reference = processor(text=text, audio=[clip], sampling_rate=16000)["input_ids"][0].tolist()
    assert prefix_ids == reference


def test_a_batch_of_text_prompts_of_different_lengths_scores_as_one_by_one(tiny_llm):
    model, tokenizer = tiny_llm
    pool, scored = split_fewshot_pool(make_items(10, with_context=True), 3)
    scorer = MultipleChoiceScorer(model, tokenizer, FewShotSampler(pool, 2))
    batch = scorer.score_text_batch(scored, [None, "What is it?"] + [None] * (len(scored) - 2))
    assert len({s.prompt_tokens for s in batch}) > 1  # left padding is exercised
    for got, item, query in zip(batch, scored, [None, "What is it?"] + [None] * (len(scored) - 2)):
        want = scorer.score_text(item, query)
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-5) and got.prompt_tokens == want.prompt_tokens


def test_a_batch_of_spoken_prompts_with_clips_of_different_lengths_scores_as_one_by_one(tiny_salad):
    model, processor = tiny_salad()
    items = make_items(6)
    scorer = MultipleChoiceScorer(model, processor.tokenizer, FewShotSampler(items[4:], 1))
    cache = EncoderStatesCache()
    inputs = [speech_inputs(cache, sine(seconds, seed=i), model, processor)
              for i, seconds in enumerate((0.7, 1.9, 1.2, 3.1))]
    assert len({i["num_placeholders"] for i in inputs}) > 1
    batch = scorer.score_speech_batch(items[:4], inputs)
    for got, item, clip_inputs in zip(batch, items, inputs):
        assert got.logprobs == pytest.approx(scorer.score_speech(item, clip_inputs).logprobs, abs=1e-5)
    with pytest.raises(ValueError, match="2 audio inputs"):
        scorer.score_speech_batch(items[:4], inputs[:2])


def test_evaluation_in_batches_equals_one_by_one(tiny_salad):
    model, processor = tiny_salad()
    items = [{**item, "audio": {"array": sine(0.5 + 0.3 * i, seed=i), "sampling_rate": 16000}}
             for i, item in enumerate(make_items(9))]

    def evaluate(batch_size):
        config = EvalConfig(modes="text,speech", num_fewshot=1, fewshot_pool_size=2, progress=False,
                            batch_size=batch_size)
        return evaluate_model(model, processor, model.language_model, processor.tokenizer, {"count": items},
                              config)["predictions"]["count"]

    one_by_one, batched = evaluate(1), evaluate(4)
    for a, b in zip(one_by_one, batched):
        for mode in ("base_text", "text", "speech"):
            assert a[mode]["prediction"] == b[mode]["prediction"]
            assert a[mode]["logprobs"] == pytest.approx(b[mode]["logprobs"], abs=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(batch_size=0)


def test_scores_are_deterministic(tiny_llm):
    model, tokenizer = tiny_llm
    items = make_items(6)
    pool, scored = split_fewshot_pool(items, 2, seed=3)
    first = [MultipleChoiceScorer(model, tokenizer, FewShotSampler(pool, 2, seed=7)).score_text(i).logprobs for i in scored]
    again = [MultipleChoiceScorer(model, tokenizer, FewShotSampler(pool, 2, seed=7)).score_text(i).logprobs for i in scored]
    assert first == again


def test_fewshot_prompts_fit_the_context_and_never_contain_the_scored_item(tiny_llm):
    model, tokenizer = tiny_llm
    items = make_items(10, with_context=True)
    sampler = FewShotSampler(items, num_fewshot=5, seed=1)  # pool includes the scored items themselves
    for max_length in (80, 150, 260, 2048):
        scorer = MultipleChoiceScorer(model, tokenizer, sampler, max_length=max_length)
        for item in items:
            prefix_ids, shots, truncated = scorer.text_prompt(item)
            longest = max(len(tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for c in item["choices"])
            assert len(prefix_ids) + longest <= max_length
            assert all(shot["id"] != item["id"] for shot in shots)
            prompt = tokenizer.decode(prefix_ids)
            assert prompt.count(question_text(item)) <= 1  # only as the scored query, never as a shot
            assert format_shot(item) not in prompt
            assert prompt.endswith(format_query(item)[-20:])
            if max_length == 2048:
                assert len(shots) == 5 and not truncated
    assert len(MultipleChoiceScorer(model, tokenizer, sampler, max_length=150).text_prompt(items[0])[1]) < 5


def test_sampler_excludes_duplicate_questions_and_is_seeded():
    items = make_items(6)
    duplicate = {**items[0], "id": "copy-of-q0"}
    sampler = FewShotSampler(items + [duplicate], num_fewshot=6, seed=0)
    shots = sampler.sample(items[0])
    assert all(question_text(s) != question_text(items[0]) for s in shots) and len(shots) == 5
    assert [s["id"] for s in sampler.sample(items[1])] == [s["id"] for s in sampler.sample(items[1])]


def test_salad_text_accuracy_equals_base_llm_when_llm_untouched(tiny_salad):
    model, processor = tiny_salad()
    items = make_items(10)
    result = evaluate_model(
        model, processor, model.language_model, processor.tokenizer, {"count": items},
        EvalConfig(modes="text", num_fewshot=2, fewshot_pool_size=3, progress=False),
    )
    row = result["benchmarks"]["count"]
    assert row["n"] == 7 and row["text_acc"] == row["base_text_acc"]
    for record in result["predictions"]["count"]:
        assert record["text"]["logprobs"] == record["base_text"]["logprobs"]


def test_gap_is_base_text_minus_speech_and_cascade_uses_transcripts(tiny_salad):
    model, processor = tiny_salad()
    items = [{**item, "audio": {"array": sine(0.6 + 0.1 * i, seed=i), "sampling_rate": 16000}}
             for i, item in enumerate(make_items(6))]

    class EchoASR:  # a perfect recognizer: returns the spoken text
        def transcribe(self, clips, keys=None):
            return [question_text(by_key[k]) for k in keys]

    by_key = {f"recorded:{item['id']}": item for item in items}
    cache = EvalCache()
    result = evaluate_model(
        model, processor, model.language_model, processor.tokenizer, {"count": items},
        EvalConfig(modes="text,speech,cascade", num_fewshot=1, fewshot_pool_size=2, progress=False),
        asr=EchoASR(), cache=cache,
    )
    row = result["benchmarks"]["count"]
    assert row["gap"] == row["base_text_acc"] - row["speech_acc"]
    assert row["cascade_acc"] == row["base_text_acc"]  # perfect transcripts == text questions
    assert result["average"]["gap"] == row["gap"]
    assert len(cache.encoder) == row["n"]
    for key in ("base_text_acc", "speech_acc", "gap"):
        low, high = row[f"{key}_ci"]
        assert low <= row[key] <= high


def test_speech_and_cascade_encode_and_transcribe_every_clip_in_batches(tiny_salad):
    model, processor = tiny_salad()
    items = [{**item, "audio": {"array": sine(0.6 + 0.1 * i, seed=i), "sampling_rate": 16000}}
             for i, item in enumerate(make_items(6))]
    asr_batches, encoder_batches = [], []
    model.audio_encoder.register_forward_hook(lambda module, args, out: encoder_batches.append(args[0].shape[0]))

    class EchoASR:
        def transcribe(self, clips, keys=None):
            asr_batches.append(len(clips))
            return [question_text(by_key[k]) for k in keys]

    by_key = {f"recorded:{item['id']}": item for item in items}
    result = evaluate_model(
        model, processor, model.language_model, processor.tokenizer, {"count": items},
        EvalConfig(modes="speech,cascade", num_fewshot=1, fewshot_pool_size=2, progress=False), asr=EchoASR())
    scored = result["benchmarks"]["count"]["n"]
    assert encoder_batches == [scored]  # one batch before scoring, none while scoring
    # later calls, one per scoring batch, are memo hits
    assert asr_batches[0] == scored and all(n <= EvalConfig().batch_size for n in asr_batches[1:])


def test_eval_config_validates_before_any_scoring():
    assert EvalConfig(modes="speech, text,speech").modes == ["speech", "text"]
    with pytest.raises(ValueError, match="Unknown or empty modes"):
        EvalConfig(modes="txt")
    with pytest.raises(ValueError, match="limit"):
        EvalConfig(limit=0)
    with pytest.raises(ValueError, match="num_fewshot"):
        EvalConfig(num_fewshot=-1)
    with pytest.raises(ValueError, match="need the SALAD model"):
        evaluate_model(None, None, None, None, make_items(3), EvalConfig(modes="speech"))


def test_text_scores_are_kept_per_llm_weights_when_the_cache_asks(tiny_salad, monkeypatch):
    model, processor = tiny_salad()
    calls = []
    score_text_batch = MultipleChoiceScorer.score_text_batch
    monkeypatch.setattr(MultipleChoiceScorer, "score_text_batch",
                        lambda self, items, *args: calls.extend(i["id"] for i in items)
                        or score_text_batch(self, items, *args))
    config = EvalConfig(modes="text", num_fewshot=1, fewshot_pool_size=2, progress=False)

    def evaluate(cache):
        calls.clear()
        result = evaluate_model(model, processor, None, None, {"count": make_items(6)}, config, cache=cache)
        return result["predictions"]["count"], len(calls)

    first, scored = evaluate(EvalCache(text={}))
    assert scored == 4
    cache = EvalCache(text={})
    evaluate(cache)
    with torch.no_grad():  # an adapter that trained: the LLM's text scores stay valid
        next(model.multi_modal_projector.parameters()).add_(1.0)
    again, scored = evaluate(cache)
    assert scored == 0 and again == first
    with torch.no_grad():  # an LLM that trained: scored anew
        model.language_model.get_input_embeddings().weight.mul_(1.5)
    changed, scored = evaluate(cache)
    assert scored == 4 and changed != first
    _, scored = evaluate(EvalCache())  # the default keeps nothing
    assert scored == 4
