"""The demo's evaluation plumbing around `evaluation.evaluate_model`: shared base LLM / ASR, spoken clips cached
on disk per voice, and frozen-encoder states cached on disk so a second run (or the next checkpoint) skips them."""

from __future__ import annotations

import os
from pathlib import Path

from evaluation.api import Benchmark, EvalCache, EvalConfig, evaluate_model
from evaluation.audio import SpokenQuestions
from evaluation.metrics import average_rows, speech_text_agreement, summarize_task
from evaluation.score_store import ScoreStore
from spans import EncoderStatesCache


class DemoEvaluator:
    """Evaluates SALAD checkpoints of one demo run on its eval sets, for the seen and the unseen voice.

    The base LLM, its tokenizer, the ASR and every cache are built once and shared by all checkpoints."""

    def __init__(self, assets: dict, cache_root: str | os.PathLike, preset):
        self.assets, self.preset = assets, preset
        self.cache_root = Path(cache_root)
        self._base = self._asr = None
        self._spoken: dict[str, SpokenQuestions] = {}
        # states are keyed by the encoder's identity and text scores by the LLM's weights, so checkpoints share them
        # text and cascade scores and the cascade's transcripts also on disk, so a resumed run or a variant
        # folder (`cp -al`) does not recompute them
        self.store = ScoreStore(self.cache_root / "eval-scores.sqlite")
        # encoder states on disk only: a checkpoint reads each clip's states once, and in memory every evaluated
        # checkpoint would hold 1.3 GB of them (568 padded windows) to the end of the run
        self.cache = EvalCache(encoder=EncoderStatesCache(self.cache_root / "eval-encoder", keep_in_memory=False),
                               text={}, store=self.store)

    @property
    def base(self):
        if self._base is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._base = (AutoModelForCausalLM.from_pretrained(self.assets["llm"]).eval(),
                          AutoTokenizer.from_pretrained(self.assets["llm"]))
        return self._base

    @property
    def asr(self):
        if self._asr is None:
            from evaluation.cascade import WhisperASR

            self._asr = WhisperASR.from_pretrained(self.assets["whisper"], store=self.store)
        return self._asr

    def spoken(self, voice: str) -> SpokenQuestions:
        if voice not in self._spoken:
            self._spoken[voice] = SpokenQuestions(voice, self.cache_root / "eval-tts")
        return self._spoken[voice]

    def _scored_clips(self, benchmarks: dict[str, list[dict]]):
        """(voice's SpokenQuestions, item) of every question the evaluation speaks: both voices, every scored item
        (the few-shot pool stays written, so it is never spoken)."""
        for voice in (self.preset.seen_voice, self.preset.unseen_voice):
            for benchmark in self._benchmarks(benchmarks):
                for item in benchmark.items:
                    yield self.spoken(voice), item

    def synthesize(self, benchmarks: dict[str, list[dict]]) -> int:
        """Speak every scored question with both eval voices now (cached on disk); returns clips made or found."""
        count = 0
        for spoken, item in self._scored_clips(benchmarks):
            spoken.clip(item)
            count += 1
        return count

    def encode(self, model, processor, benchmarks: dict[str, list[dict]]) -> int:
        """Frozen-encoder states of every scored eval clip, computed once into the disk cache (in batches)."""
        clips = [spoken.clip(item) for spoken, item in self._scored_clips(benchmarks)]
        self.cache.encoder.precompute_clips(model, processor, clips)
        return len(clips)

    def _benchmarks(self, benchmarks: dict[str, list[dict]]) -> list[Benchmark]:
        pool = self.preset.fewshot_pool_size
        return [Benchmark(name, items[pool:], fewshot_pool=items[:pool]) for name, items in benchmarks.items()]

    def screen_text(self, benchmarks: dict[str, list[dict]]) -> dict:
        """Base-LLM text accuracy per task (no speech), for choosing the eval tasks."""
        base, tokenizer = self.base
        config = EvalConfig(modes=["text"], num_fewshot=self.preset.num_fewshot,
                            max_length=self.preset.eval_max_length, num_resamples=200)
        result = evaluate_model(None, None, base, tokenizer, self._benchmarks(benchmarks), config,
                                cache=EvalCache(base_text=self.cache.base_text, store=self.store))
        return result["benchmarks"]

    def evaluate_voices(self, model, processor, benchmarks: dict[str, list[dict]]) -> dict:
        """{"seen": results, "unseen": results}. Text scores do not depend on the voice, so text is scored once
        (with the seen voice) and the unseen voice's rows are re-summarized from its speech/cascade results
        plus those text results (same items, same order)."""
        seen = self.evaluate(model, processor, benchmarks, self.preset.seen_voice)
        unseen = self.evaluate(model, processor, benchmarks, self.preset.unseen_voice, modes=("speech", "cascade"))
        p = self.preset
        for name, records in unseen["predictions"].items():
            text_records = seen["predictions"][name]
            if [r["id"] for r in records] != [r["id"] for r in text_records]:
                raise RuntimeError(f"{name}: seen and unseen evaluations scored different items")
            correct = {}
            for key, label in (("base_text_acc", "base_text"), ("text_acc", "text")):
                correct[key] = [r[label]["correct"] for r in text_records]
            for key, label in (("speech_acc", "speech"), ("cascade_acc", "cascade")):
                correct[key] = [r[label]["correct"] for r in records]
            for record, text_record in zip(records, text_records):
                record.update(base_text=text_record["base_text"], text=text_record["text"])
            row = summarize_task(correct, [len(r["text"]["logprobs"]) for r in text_records], 200, p.seed)
            row.update(speech_text_agreement([r["base_text"] for r in records], [r["speech"] for r in records],
                                             200, p.seed))
            row.update({k: unseen["benchmarks"][name][k] for k in ("num_fewshot_pool", "mean_shots")
                        if k in unseen["benchmarks"][name]})
            unseen["benchmarks"][name] = row
        unseen["average"] = average_rows(unseen["benchmarks"])
        unseen["config"]["modes"] = ["text (shared with the seen voice)", "speech", "cascade"]
        return {"seen": seen, "unseen": unseen}

    def evaluate(self, model, processor, benchmarks: dict[str, list[dict]], voice: str,
                 modes=("text", "speech", "cascade")) -> dict:
        base, tokenizer = self.base
        config = EvalConfig(modes=list(modes), num_fewshot=self.preset.num_fewshot,
                            max_length=self.preset.eval_max_length, num_resamples=200, seed=self.preset.seed)
        result = evaluate_model(model, processor, base, tokenizer, self._benchmarks(benchmarks), config,
                                spoken=self.spoken(voice), asr=self.asr if "cascade" in modes else None,
                                cache=self.cache)
        result["voice"] = voice
        return result
