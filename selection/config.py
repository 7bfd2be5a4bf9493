"""Settings of one `salad-select` run (YAML keys = field names = CLI flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["SelectConfig", "load_config"]


@dataclass
class SelectConfig:
    """Settings of one active-selection run (YAML keys = field names)."""

    output_dir: str = field(default="runs/select", metadata={"help": "output folder (dataset/ and report/)"})
    pool: str | None = field(default=None, metadata={"help": "text pool: JSONL/.txt/datasets folder; None builds "
                                                            "the packaged BIG-bench + evals pool"})
    pool_exclude: list[str] = field(default_factory=lambda: ["general_knowledge"], metadata={
        "help": "tasks left out of the packaged pool (the evaluation tasks)"})
    pool_max_per_domain: int = field(default=60, metadata={"help": "cap per domain of the packaged pool"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "SALAD checkpoint folder whose misalignment M(c) drives the selection (the Stage I model); required"})
    embedding_model: str = field(default="minilm", metadata={"help": "minilm | bge-large | model id or folder"})
    embedding_pooling: str | None = field(default=None, metadata={"help": "mean | cls | None (per model)"})
    embedding_batch_size: int = field(default=64, metadata={"help": "texts per embedding batch"})
    embedding_cache_dir: str | None = field(default=None, metadata={"help": "embedding cache (default: "
                                                                           "<cache_dir>/embeddings)"})
    cache_dir: str | None = field(default=None, metadata={"help": "step cache, keyed by each step's settings; "
                                                                 "runs may share one (default: <output_dir>/cache)"})
    num_clusters: int = field(default=16, metadata={"help": "K of the balanced k-means (paper: 128)"})
    kmeans_iters: int = field(default=25, metadata={"help": "maximum Lloyd iterations"})
    gamma: float = field(default=5.0, metadata={"help": "exponent of M(c) in the target (paper: 5; 0 = uniform)"})
    budget_texts: int | None = field(default=None, metadata={"help": "budget: number of texts"})
    budget_hours: float | None = field(default=None, metadata={"help": "budget: hours of synthesized audio"})
    budget_tokens: int | None = field(default=None, metadata={"help": "budget: LLM tokens of selected text"})
    words_per_second: float = field(default=2.5, metadata={"help": "speaking rate for the hours estimate before "
                                                                   "the probes measure it"})
    tts: str = field(default="piper", metadata={"help": "voice pool, e.g. 'piper,flite:slt,festival'"})
    probe_size: int = field(default=4, metadata={"help": "probe documents per cluster"})
    probe_min_words: int = field(default=25, metadata={"help": "words per probe document (texts concatenated)"})
    max_cer: float | None = field(default=0.5, metadata={"help": "drop clusters whose mean probe CER exceeds this "
                                                                "(None: no ASR check)"})
    cer_model: str | None = field(default=None, metadata={"help": "Whisper folder (WhisperForConditionalGeneration) "
                                                                 "for the probe CER; required when max_cer is set"})
    misalignment_batch_size: int = field(default=4, metadata={"help": "probe documents per forward pass"})
    synthesize: bool = field(default=True, metadata={"help": "synthesize the selected texts (else only select)"})
    num_proc: int = field(default=1, metadata={"help": "TTS worker processes"})
    seed: int = field(default=0, metadata={"help": "seed of clustering, probes, sampling and voices"})
    round: int = field(default=1, metadata={"help": "selection round recorded in every row (paper: one)"})
    device: str | None = field(default=None, metadata={"help": "cuda / cpu (default: cuda when available)"})
    examples_per_cluster: int = field(default=3, metadata={"help": "example texts per cluster in the report"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run the checkpoint's own code even when it is not byte-identical to the installed modeling_salad"})

    def __post_init__(self):
        budgets = [b for b in (self.budget_texts, self.budget_hours, self.budget_tokens) if b is not None]
        if len(budgets) != 1:
            raise ValueError("give exactly one of budget_texts, budget_hours, budget_tokens")
        if budgets[0] <= 0:
            raise ValueError(f"the budget must be positive, got {budgets[0]}")
        if self.num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {self.num_clusters}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.max_cer is not None and not 0 <= self.max_cer:
            raise ValueError(f"max_cer must be >= 0 or null, got {self.max_cer}")
        if self.words_per_second <= 0 or self.probe_size < 1 or self.probe_min_words < 1:
            raise ValueError("words_per_second, probe_size and probe_min_words must be positive")


    @property
    def step_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.output_dir) / "cache"

    @property
    def budget(self) -> dict:
        return {"texts": self.budget_texts, "hours": self.budget_hours, "tokens": self.budget_tokens}


def load_config(path: str | None, overrides: dict | None = None) -> SelectConfig:
    """YAML file + overrides -> SelectConfig; unknown keys are a ValueError naming them."""
    data = {}
    if path:
        if not Path(path).is_file():
            raise ValueError(f"config file {path} does not exist")
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping")
    data.update(overrides or {})
    names = {f.name for f in dataclasses.fields(SelectConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known: {sorted(names)}")
    return SelectConfig(**data)
