"""`evaluate_model`: the Python entry of the evaluation (salad-eval, the demo pipeline and the training callback
all call it). Scores every benchmark in the requested modes and summarizes accuracies, intervals and the gap."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from modeling_salad.processing_salad import AUDIO_TOKEN
from spans import EncoderStatesCache

from .audio import SpokenQuestions, speech_inputs
from .generate_mode import generate_answer, judge_answer
from .metrics import average_rows, speech_text_agreement, summarize_task
from .prompts import FewShotSampler, split_fewshot_pool, validate_item
from .scorer import MultipleChoiceScorer, check_normalization

logger = logging.getLogger(__name__)

MODES = ("text", "speech", "cascade", "generate")


@dataclass
class Benchmark:
    """Items to score and the few-shot pool (None: a seeded part of `items` is held out as the pool)."""

    name: str
    items: list[dict]
    fewshot_pool: list[dict] | None = None


@dataclass
class EvalCache:
    """What stays valid across evaluations of checkpoints of one model family: TTS clips, frozen-encoder states,
    base-LLM text scores, ASR transcripts and cascade scores (the base LLM and the ASR do not change)."""

    encoder: EncoderStatesCache = field(default_factory=EncoderStatesCache)
    base_text: dict = field(default_factory=dict)
    cascade: dict = field(default_factory=dict)


def parse_modes(modes: str | Sequence[str]) -> list[str]:
    names = [m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes) if m.strip()]
    unknown = [m for m in names if m not in MODES]
    if unknown or not names:
        raise ValueError(f"Unknown or empty modes {unknown or names!r}; choose from {', '.join(MODES)}.")
    return list(dict.fromkeys(names))


def as_benchmarks(items) -> list[Benchmark]:
    """Accept a list of items, a Benchmark, a list of Benchmarks, or {name: items}."""
    if isinstance(items, Benchmark):
        return [items]
    if isinstance(items, Mapping):
        return [b if isinstance(b, Benchmark) else Benchmark(name, list(b)) for name, b in items.items()]
    items = list(items)
    if items and all(isinstance(b, Benchmark) for b in items):
        return items
    return [Benchmark("benchmark", items)]


def _pool_and_items(bench: Benchmark, num_fewshot: int, pool_size: int, seed: int):
    if bench.fewshot_pool is not None or num_fewshot == 0:
        return bench.fewshot_pool or [], bench.items
    if pool_size is None:  # auto: enough to vary the shots, without eating a small benchmark
        pool_size = min(25, max(num_fewshot, len(bench.items) // 7))
    return split_fewshot_pool(bench.items, min(pool_size, len(bench.items) - 1), seed)


def evaluate_model(
    model,
    processor,
    base_model,
    base_tokenizer,
    items,
    modes: str | Sequence[str] = ("text", "speech"),
    *,
    num_fewshot: int = 5,
    fewshot_pool_size: int | None = None,
    fewshot_seed: int = 1234,
    max_length: int | None = 2048,
    normalization: str = "chars",
    share_prefix: bool = True,
    limit: int | None = None,
    spoken: SpokenQuestions | None = None,
    asr=None,
    cache: EvalCache | None = None,
    generate_max_new_tokens: int = 32,
    generate_show_choices: bool = False,
    num_resamples: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Evaluate a SALAD model (and its base LLM) on multiple-choice benchmarks.

    Args:
        model, processor: `SaladForCausalLM` + `SaladProcessor` (None: only the base LLM is scored, text/cascade).
        base_model, base_tokenizer: the text LLM the gap is measured against (None: no base_text_acc / cascade).
        items: MC items (`{"id","question","choices","answer","context"?, "audio"?}`), a `Benchmark`, a list of
            them or `{name: items}`.
        modes: subset of text (base LLM and SALAD on text), speech, cascade (ASR -> base LLM), generate.
        num_fewshot: up to this many shots per prompt (as many as fit `max_length`).
        fewshot_pool_size: when a benchmark has no pool, this many items (seeded) are held out as shots and not
            scored (None: min(25, max(num_fewshot, n // 7))).
        normalization: "chars" (lm-eval acc_norm), "tokens" or "none".
        limit: score at most this many items per benchmark (after the pool is held out).
        spoken: where clips come from (recorded `audio` or TTS); default `SpokenQuestions("piper")`.
        asr: a `WhisperASR` for the cascade.
        cache: an `EvalCache` reused across calls makes repeated evaluations cheap.
    Returns:
        {"benchmarks": {name: row}, "average": {...}, "predictions": {name: [per-item records]}, "config": {...}};
        accuracies are percent, unrounded, and gap == base_text_acc - speech_acc.
    """
    modes = parse_modes(modes)
    check_normalization(normalization)
    if num_fewshot < 0:
        raise ValueError(f"num_fewshot must be >= 0, got {num_fewshot}.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}.")
    if ("speech" in modes or "generate" in modes) and (model is None or processor is None):
        raise ValueError("Modes speech/generate need the SALAD model and processor.")
    if "cascade" in modes and (asr is None or base_model is None):
        raise ValueError("Mode cascade needs an ASR model (--asr-model) and the base LLM.")
    if "text" in modes and model is None and base_model is None:
        raise ValueError("Mode text needs a model or a base model.")
    if base_model is not None and base_tokenizer is None:
        raise ValueError("base_model given without base_tokenizer.")
    cache = cache or EvalCache()
    spoken = spoken or SpokenQuestions("piper")
    modules = [m for m in (model, base_model) if m is not None]
    was_training = [m.training for m in modules]
    for module in modules:
        module.eval()
    try:
        results, predictions = _evaluate_all(
            items, modes, model, processor, base_model, base_tokenizer, num_fewshot, fewshot_pool_size, fewshot_seed,
            max_length, normalization, share_prefix, limit, spoken, asr, cache, generate_max_new_tokens,
            generate_show_choices, num_resamples, seed, progress,
        )
    finally:  # a training loop calls this mid-training: give the modules back in the mode they were in
        for module, training in zip(modules, was_training):
            module.train(training)
    return {
        "benchmarks": results,
        "average": average_rows(results),
        "predictions": predictions,
        "config": {
            "modes": modes, "num_fewshot": num_fewshot, "max_length": max_length, "normalization": normalization,
            "fewshot_seed": fewshot_seed, "num_resamples": num_resamples, "bootstrap_seed": seed,
        },
    }


def _evaluate_all(
    items, modes, model, processor, base_model, base_tokenizer, num_fewshot, fewshot_pool_size, fewshot_seed,
    max_length, normalization, share_prefix, limit, spoken, asr, cache, generate_max_new_tokens,
    generate_show_choices, num_resamples, seed, progress,
):
    results, predictions = {}, {}
    for bench in as_benchmarks(items):
        pool, scored = _pool_and_items(bench, num_fewshot, fewshot_pool_size, fewshot_seed)
        scored = scored[:limit] if limit else scored
        if not scored:
            raise ValueError(f"Benchmark {bench.name!r} has no items to score.")
        for item in scored:
            validate_item(item)
        sampler = FewShotSampler(pool, num_fewshot, fewshot_seed)
        records, correct = _evaluate_benchmark(
            bench.name, scored, modes, sampler, model, processor, base_model, base_tokenizer,
            max_length, normalization, share_prefix, spoken, asr, cache,
            generate_max_new_tokens, generate_show_choices, progress,
        )
        row = summarize_task(correct, [len(item["choices"]) for item in scored], num_resamples, seed)
        if "base_text" in records[0] and "speech" in records[0]:
            row.update(speech_text_agreement([r["base_text"] for r in records], [r["speech"] for r in records],
                                             num_resamples, seed))
        row["num_fewshot_pool"] = len(pool)
        row["mean_shots"] = _mean_shots(records)
        results[bench.name] = row
        predictions[bench.name] = records
    return results, predictions


def _mean_shots(records: list[dict]) -> dict:
    out = {}
    for key in ("base_text", "text", "speech", "cascade"):
        shots = [r[key]["num_shots"] for r in records if key in r]
        if shots:
            out[key] = sum(shots) / len(shots)
    return out


def _evaluate_benchmark(
    name, items, modes, sampler, model, processor, base_model, base_tokenizer, max_length, normalization,
    share_prefix, spoken, asr, cache, generate_max_new_tokens, generate_show_choices, progress,
):
    scorer = lambda m, tok: MultipleChoiceScorer(
        m, tok, sampler, max_length, share_prefix, getattr(processor, "audio_token", AUDIO_TOKEN)
    )
    base_scorer = scorer(base_model, base_tokenizer) if base_model is not None else None
    salad_scorer = scorer(model, processor.tokenizer) if model is not None and processor is not None else None
    cache_tag = (name, sampler.num_fewshot, sampler.seed, max_length)
    records = [{"id": str(item["id"]), "answer": int(item["answer"])} for item in items]
    correct: dict[str, list[bool]] = {}

    def run(key, label, fn):
        values = []
        for record, item in zip(records, tqdm(items, desc=f"{name}: {label}", disable=not progress, leave=False)):
            result = fn(item)
            if key == "generate_acc":
                record["generate"] = result
                values.append(result["correct"])
            else:
                record[label] = result.to_dict(normalization)
                values.append(result.correct(normalization))
        correct[key] = values

    def memo(store, key, fn):
        if key not in store:
            store[key] = fn()
        return store[key]

    if "text" in modes:
        if base_scorer is not None:
            run("base_text_acc", "base_text",
                lambda it: memo(cache.base_text, (*cache_tag, str(it["id"])), lambda: base_scorer.score_text(it)))
        if salad_scorer is not None:
            run("text_acc", "text", salad_scorer.score_text)
    if "speech" in modes:
        def speech(item):
            audio_inputs = speech_inputs(cache.encoder, spoken.clip(item), model, processor)
            return salad_scorer.score_speech(item, audio_inputs)

        run("speech_acc", "speech", speech)
    if "cascade" in modes:
        def cascade(item):
            key = spoken.clip_key(item)
            transcript = asr.transcribe([spoken.clip(item)], keys=[key])[0]
            scores = memo(cache.cascade, (*cache_tag, key),
                          lambda: base_scorer.score_text(item, query_text=transcript or "(inaudible)"))
            scores.extra["transcript"] = transcript
            return scores

        run("cascade_acc", "cascade", cascade)
    if "generate" in modes:
        def generate(item):
            answer = generate_answer(model, processor, item, spoken.clip(item), generate_max_new_tokens,
                                     generate_show_choices)
            return {"answer": answer, "correct": judge_answer(answer, item["choices"], int(item["answer"]))}

        run("generate_acc", "generate", generate)
    return records, correct
