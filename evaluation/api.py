"""`evaluate_model`: the Python entry of the evaluation (salad-eval, the demo pipeline and the training callback
all call it). Scores every benchmark in the requested modes and summarizes accuracies, intervals and the gap."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tqdm.auto import tqdm

from modeling_salad.processing_salad import AUDIO_TOKEN
from spans import EncoderStatesCache, weights_digest

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
class EvalConfig:
    """How `evaluate_model` scores (the salad-eval flags build one)."""

    modes: list[str] | str = field(default_factory=lambda: ["text", "speech"], metadata={
        "help": f"subset of {', '.join(MODES)}: text (base LLM and SALAD on text), speech, cascade (ASR -> base "
                "LLM), generate (free answers); a list or a comma-separated string"})
    num_fewshot: int = field(default=5, metadata={"help": "up to this many shots per prompt (as many as fit "
                                                          "max_length)"})
    fewshot_pool_size: int | None = field(default=None, metadata={
        "help": "when a benchmark has no pool, this many items (seeded) are held out as shots and not scored "
                "(None: min(25, max(num_fewshot, n // 7)))"})
    fewshot_seed: int = field(default=1234, metadata={"help": "seed of the shot pool and of the shots per item"})
    max_length: int | None = field(default=2048, metadata={"help": "context budget in tokens (paper: 2048)"})
    normalization: str = field(default="chars", metadata={"help": "length normalization of choice "
                                                                  "log-likelihoods: chars (lm-eval acc_norm), "
                                                                  "tokens or none"})
    share_prefix: bool = field(default=True, metadata={"help": "score the prompt once for all choices"})
    batch_size: int = field(default=8, metadata={
        "help": "prompts scored together in one forward pass (left-padded; equal to one-by-one scoring up to float "
                "rounding); on a CPU a batch of 8 short prompts costs about twice one"})
    limit: int | None = field(default=None, metadata={"help": "score at most this many items per benchmark (after "
                                                              "the pool is held out)"})
    generate_max_new_tokens: int = field(default=32, metadata={"help": "generate mode: answer length"})
    generate_show_choices: bool = field(default=False, metadata={"help": "generate mode: list the options"})
    num_resamples: int = field(default=1000, metadata={"help": "bootstrap resamples of the 95% intervals"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self):
        self.modes = parse_modes(self.modes)
        check_normalization(self.normalization)
        if self.num_fewshot < 0:
            raise ValueError(f"num_fewshot must be >= 0, got {self.num_fewshot}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}.")

    def summary(self) -> dict:
        return {"modes": self.modes, "num_fewshot": self.num_fewshot, "max_length": self.max_length,
                "normalization": self.normalization, "fewshot_seed": self.fewshot_seed,
                "num_resamples": self.num_resamples, "bootstrap_seed": self.seed}


@dataclass
class EvalCache:
    """What stays valid across evaluations of checkpoints of one model family: TTS clips, frozen-encoder states,
    base-LLM text scores, ASR transcripts and cascade scores (the base LLM and the ASR do not change)."""

    encoder: EncoderStatesCache = field(default_factory=EncoderStatesCache)
    base_text: dict = field(default_factory=dict)
    cascade: dict = field(default_factory=dict)
    # The SALAD model's own text scores, keyed by a digest of its language model's weights and its tokenizer, so
    # checkpoints that trained only the adapter (the LLM frozen) score text once. None: not kept, because the digest
    # reads every LLM weight once per call, which a single evaluation of a large model does not want.
    text: dict | None = None
    # Text-prompt log-likelihoods on disk (`evaluation.score_store.ScoreStore`), shared across processes; the ASR's
    # transcripts are stored by passing the same store to `WhisperASR(store=...)`.
    store: Any = None


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


@dataclass
class _Evaluation:
    """One `evaluate_model` call: the settings, the models and where clips, transcripts and caches come from."""

    config: EvalConfig
    model: Any
    processor: Any
    base_model: Any
    base_tokenizer: Any
    spoken: SpokenQuestions
    asr: Any
    cache: EvalCache

    @cached_property
    def text_identity(self) -> tuple[str, str]:
        """What the SALAD model's text scores depend on besides the item: its language model and its tokenizer."""
        tokenizer = self.processor.tokenizer
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
        return (weights_digest(getattr(self.model, "language_model", self.model)),
                hashlib.sha256(f"{type(tokenizer).__name__}\x1f{vocab}".encode()).hexdigest())

    def check(self) -> None:
        modes = self.config.modes
        if ("speech" in modes or "generate" in modes) and (self.model is None or self.processor is None):
            raise ValueError("Modes speech/generate need the SALAD model and processor.")
        if "cascade" in modes and (self.asr is None or self.base_model is None):
            raise ValueError("Mode cascade needs an ASR model (--asr-model) and the base LLM.")
        if "text" in modes and self.model is None and self.base_model is None:
            raise ValueError("Mode text needs a model or a base model.")
        if self.base_model is not None and self.base_tokenizer is None:
            raise ValueError("base_model given without base_tokenizer.")


def _pool_and_items(bench: Benchmark, num_fewshot: int, pool_size: int, seed: int):
    if bench.fewshot_pool is not None or num_fewshot == 0:
        return bench.fewshot_pool or [], bench.items
    if pool_size is None:  # auto: enough to vary the shots, without eating a small benchmark
        pool_size = min(25, max(num_fewshot, len(bench.items) // 7))
    return split_fewshot_pool(bench.items, min(pool_size, len(bench.items) - 1), seed)


def evaluate_model(model, processor, base_model, base_tokenizer, items, config: EvalConfig | None = None, *,
                   spoken: SpokenQuestions | None = None, asr=None, cache: EvalCache | None = None) -> dict:
    """Evaluate a SALAD model (and its base LLM) on multiple-choice benchmarks.

    Args:
        model, processor: `SaladForCausalLM` + `SaladProcessor` (None: only the base LLM is scored, text/cascade).
        base_model, base_tokenizer: the text LLM the gap is measured against (None: no base_text_acc / cascade).
        items: MC items (`{"id","question","choices","answer","context"?, "audio"?}`), a `Benchmark`, a list of
            them or `{name: items}`.
        config: an `EvalConfig` (modes, shots, context budget, normalization, bootstrap; default: its defaults).
        spoken: where clips come from (recorded `audio` or TTS); default `SpokenQuestions("piper")`.
        asr: a `WhisperASR` for the cascade.
        cache: an `EvalCache` reused across calls makes repeated evaluations cheap.
    Returns:
        {"benchmarks": {name: row}, "average": {...}, "predictions": {name: [per-item records]}, "config": {...}};
        accuracies are percent, unrounded, and gap == base_text_acc - speech_acc.
    """
    run = _Evaluation(config or EvalConfig(), model, processor, base_model, base_tokenizer,
                      spoken or SpokenQuestions("piper"), asr, cache or EvalCache())
    run.check()
    modules = [m for m in (model, base_model) if m is not None]
    was_training = [m.training for m in modules]
    for module in modules:
        module.eval()
    try:
        results, predictions = _evaluate_all(run, items)
    finally:  # a training loop calls this mid-training: give the modules back in the mode they were in
        for module, training in zip(modules, was_training):
            module.train(training)
    return {"benchmarks": results, "average": average_rows(results), "predictions": predictions,
            "config": run.config.summary()}


def _evaluate_all(run: _Evaluation, items) -> tuple[dict, dict]:
    config, results, predictions = run.config, {}, {}
    for bench in as_benchmarks(items):
        pool, scored = _pool_and_items(bench, config.num_fewshot, config.fewshot_pool_size, config.fewshot_seed)
        scored = scored[:config.limit] if config.limit else scored
        if not scored:
            raise ValueError(f"Benchmark {bench.name!r} has no items to score.")
        for item in scored:
            validate_item(item)
        sampler = FewShotSampler(pool, config.num_fewshot, config.fewshot_seed)
        records, correct = _BenchmarkScoring(run, bench.name, scored, sampler).run()
        row = summarize_task(correct, [len(item["choices"]) for item in scored], config.num_resamples, config.seed)
        if "base_text" in records[0] and "speech" in records[0]:
            row.update(speech_text_agreement([r["base_text"] for r in records], [r["speech"] for r in records],
                                             config.num_resamples, config.seed))
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


def _memo_batch(store: dict, keys: list, compute) -> list:
    """`store[key]` for every key; the missing ones computed together by `compute(indices)` (results in order)."""
    missing = [i for i, key in enumerate(keys) if key not in store]
    if missing:
        for i, value in zip(missing, compute(missing)):
            store[keys[i]] = value
    return [store[key] for key in keys]


class _BenchmarkScoring:
    """Every requested mode on one benchmark's items: per-item records and per-mode correctness."""

    def __init__(self, run: _Evaluation, name: str, items: list[dict], sampler: FewShotSampler):
        self.evaluation, self.name, self.items = run, name, items
        config, processor = run.config, run.processor
        audio_token = getattr(processor, "audio_token", AUDIO_TOKEN)

        def scorer(model, tokenizer):
            return MultipleChoiceScorer(model, tokenizer, sampler, config.max_length, config.share_prefix, audio_token,
                                        store=run.cache.store)

        self.base_scorer = scorer(run.base_model, run.base_tokenizer) if run.base_model is not None else None
        self.salad_scorer = (scorer(run.model, processor.tokenizer)
                             if run.model is not None and processor is not None else None)
        # A text prompt never reaches the adapter, so the SALAD model's text scores are its language model's: scored
        # (and stored) under the LLM's own identity, they stay valid for every checkpoint that kept the LLM.
        self.salad_text_scorer = (scorer(getattr(run.model, "language_model", run.model), processor.tokenizer)
                                  if self.salad_scorer is not None else None)
        self.cache_tag = (name, sampler.num_fewshot, sampler.seed, config.max_length)
        self.records = [{"id": str(item["id"]), "answer": int(item["answer"])} for item in items]
        self.correct: dict[str, list[bool]] = {}

    def run(self) -> tuple[list[dict], dict[str, list[bool]]]:
        modes = self.evaluation.config.modes
        if "text" in modes:
            if self.base_scorer is not None:
                self._score("base_text_acc", "base_text", self._base_text)
            if self.salad_scorer is not None:
                self._score("text_acc", "text", self._salad_text)
        if "speech" in modes:
            self._encode_clips()
            self._score("speech_acc", "speech", self._speech)
        if "cascade" in modes:
            self._transcribe_clips()
            self._score("cascade_acc", "cascade", self._cascade)
        if "generate" in modes:
            self._score("generate_acc", "generate", self._generate)
        return self.records, self.correct

    def _score(self, key: str, label: str, score_batch) -> None:
        """Score the items in batches of `config.batch_size` (`score_batch(items)` -> one result per item)."""
        config, values = self.evaluation.config, []
        size = 1 if key == "generate_acc" else config.batch_size
        with tqdm(total=len(self.items), desc=f"{self.name}: {label}", disable=not config.progress,
                  leave=False) as bar:
            for start in range(0, len(self.items), size):
                chunk = self.items[start:start + size]
                for record, result in zip(self.records[start:start + size], score_batch(chunk)):
                    if key == "generate_acc":
                        record["generate"] = result
                        values.append(result["correct"])
                    else:
                        record[label] = result.to_dict(config.normalization)
                        values.append(result.correct(config.normalization))
                bar.update(len(chunk))
        self.correct[key] = values

    def _keys(self, items, *prefix) -> list:
        return [(*prefix, *self.cache_tag, str(item["id"])) for item in items]

    def _base_text(self, items):
        return _memo_batch(self.evaluation.cache.base_text, self._keys(items),
                           lambda missing: self.base_scorer.score_text_batch([items[i] for i in missing]))

    def _salad_text(self, items):
        run = self.evaluation
        if run.cache.text is None:
            return self.salad_text_scorer.score_text_batch(items)
        return _memo_batch(run.cache.text, self._keys(items, run.text_identity),
                           lambda missing: self.salad_text_scorer.score_text_batch([items[i] for i in missing]))

    def _encode_clips(self) -> None:
        """Every clip's encoder states before scoring, in batches (`EncoderStatesCache.precompute_clips`)."""
        run = self.evaluation
        items = tqdm(self.items, desc=f"{self.name}: audio states", disable=not run.config.progress, leave=False)
        run.cache.encoder.precompute_clips(run.model, run.processor, (run.spoken.clip(item) for item in items))

    def _transcribe_clips(self) -> None:
        """Every clip's transcript before scoring, in the ASR's batches (memoized per clip key)."""
        run = self.evaluation
        clips = [run.spoken.clip(item) for item in self.items]
        run.asr.transcribe(clips, keys=[run.spoken.clip_key(item) for item in self.items])

    def _speech(self, items):
        run = self.evaluation
        inputs = [speech_inputs(run.cache.encoder, run.spoken.clip(item), run.model, run.processor) for item in items]
        return self.salad_scorer.score_speech_batch(items, inputs)

    def _cascade(self, items):
        run = self.evaluation
        keys = [run.spoken.clip_key(item) for item in items]
        transcripts = run.asr.transcribe([run.spoken.clip(item) for item in items], keys=keys)
        queries = [transcript or "(inaudible)" for transcript in transcripts]
        scores = _memo_batch(run.cache.cascade, [(*self.cache_tag, key) for key in keys],
                             lambda missing: self.base_scorer.score_text_batch([items[i] for i in missing],
                                                                               [queries[i] for i in missing]))
        for item_scores, transcript in zip(scores, transcripts):
            item_scores.extra["transcript"] = transcript
        return scores

    def _generate(self, items):
        run, config = self.evaluation, self.evaluation.config
        results = []
        for item in items:
            answer = generate_answer(run.model, run.processor, item, run.spoken.clip(item),
                                     config.generate_max_new_tokens, config.generate_show_choices)
            results.append({"answer": answer, "correct": judge_answer(answer, item["choices"], int(item["answer"]))})
        return results
