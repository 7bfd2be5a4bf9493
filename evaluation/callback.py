"""Trainer callback: spoken multiple-choice accuracy on a small fixed subset every N steps, logged like any metric
(`speech_acc`, `text_acc`, `base_text_acc`, `gap`)."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import TrainerCallback

from .api import EvalCache, EvalConfig, evaluate_model, parse_modes
from .audio import SpokenQuestions


class SpokenEvalCallback(TrainerCallback):
    """Every `eval_steps` optimizer steps (and at the end of training), score `items` in `modes`.

    Args:
        trainer: the Trainer (its model, processing class and metric log are used). For a `DistillationTrainer`
            the frozen teacher is the base LLM when `base_model` is None.
        items: a small fixed list of MC items (with `audio`, or synthesized once with `voices` and cached).
        eval_steps: period in global steps (0 disables periodic evaluation).
        base_model, base_tokenizer: the text LLM for `base_text_acc` / `gap` (scored once: it never changes).
        modes: subset of text, speech (cascade/generate are too slow for a training loop).
        num_fewshot: shots per prompt; shots come from a seeded held-out part of `items` (or `fewshot_pool`).
    """

    def __init__(
        self,
        trainer,
        items: Sequence[dict],
        eval_steps: int = 500,
        base_model=None,
        base_tokenizer=None,
        modes: str | Sequence[str] = ("text", "speech"),
        num_fewshot: int = 2,
        fewshot_pool: Sequence[dict] | None = None,
        voices: str | None = "piper",
        max_length: int = 2048,
    ):
        if eval_steps < 0:
            raise ValueError(f"eval_steps must be >= 0, got {eval_steps}.")
        self.modes = parse_modes(modes)
        if set(self.modes) - {"text", "speech"}:
            raise ValueError(f"SpokenEvalCallback runs text/speech only, got {self.modes}.")
        if not items:
            raise ValueError("SpokenEvalCallback needs at least one item.")
        self.trainer = trainer
        self.items = list(items)
        self.eval_steps = eval_steps
        self.base_model = base_model
        self.base_tokenizer = base_tokenizer
        self.num_fewshot = num_fewshot
        self.fewshot_pool = list(fewshot_pool) if fewshot_pool is not None else None
        self.spoken = SpokenQuestions(voices)
        self.max_length = max_length
        self.cache = EvalCache()  # clips, frozen-encoder states and base-LLM scores are computed once
        self.history: list[dict] = []

    def _base(self, processor):
        if self.base_model is not None:
            return self.base_model, self.base_tokenizer or processor.tokenizer
        teacher = getattr(self.trainer, "_teacher_module", None)
        if callable(teacher):
            return teacher(), processor.tokenizer
        return None, None

    def compute(self, step: int | None = None) -> dict[str, float]:
        from .api import Benchmark

        trainer = self.trainer
        unwrap = getattr(getattr(trainer, "accelerator", None), "unwrap_model", lambda m: m)
        model = unwrap(trainer.model)
        processor = trainer.processing_class
        base_model, base_tokenizer = self._base(processor)
        benchmark = Benchmark("train-probe", self.items, self.fewshot_pool)
        config = EvalConfig(modes=self.modes, num_fewshot=self.num_fewshot,
                            fewshot_pool_size=max(self.num_fewshot, 1) if self.num_fewshot else 0,
                            max_length=self.max_length, num_resamples=1, progress=False)
        result = evaluate_model(model, processor, base_model, base_tokenizer, benchmark, config, spoken=self.spoken,
                                cache=self.cache)
        row = result["benchmarks"]["train-probe"]
        metrics = {k: float(row[k]) for k in ("speech_acc", "text_acc", "base_text_acc", "gap") if k in row}
        self.history.append({"step": step, **metrics})
        return metrics

    def _log(self, metrics: dict, control) -> None:
        store = getattr(self.trainer, "_metrics", None)
        if isinstance(store, dict) and "train" in store:  # TRL trainers average these into the next log line
            for name, value in metrics.items():
                store["train"][name].append(value)
            control.should_log = True
        else:
            self.trainer.log(metrics)

    def on_step_end(self, args, state, control, **kwargs):
        if self.eval_steps and state.global_step % self.eval_steps == 0:
            self._log(self.compute(state.global_step), control)

    def on_train_end(self, args, state, control, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            metrics = self.compute(state.global_step)
            self.trainer.log(metrics)
