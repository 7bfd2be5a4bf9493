"""Spoken multiple-choice evaluation: scorer, text-speech gap, ASR cascade, plots (salad-eval).

    from evaluation import evaluate_model, Benchmark, EvalCache, EvalConfig, SpokenQuestions
    result = evaluate_model(model, processor, base_model, base_tokenizer, items, EvalConfig(modes="text,speech"))
"""

from .api import MODES, Benchmark, EvalCache, EvalConfig, evaluate_model, parse_modes
from .audio import SpokenQuestions
from .metrics import bootstrap_ci, paired_bootstrap_gap_ci, summarize_task
from .plots import plot_accuracy_by_task, plot_gap_over_checkpoints
from .prompts import FewShotSampler, split_fewshot_pool
from .scorer import ChoiceScores, MultipleChoiceScorer, continuation_logprobs

__all__ = ["MODES", "Benchmark", "ChoiceScores", "EvalCache", "EvalConfig",
           "FewShotSampler", "MultipleChoiceScorer",
           "SpokenQuestions", "bootstrap_ci", "continuation_logprobs", "evaluate_model", "paired_bootstrap_gap_ci",
           "parse_modes", "plot_accuracy_by_task", "plot_gap_over_checkpoints", "split_fewshot_pool",
           "summarize_task"]
