"""Resolve `--benchmark` specs to items + few-shot pools.

Spec forms: a JSONL file, a BIG-bench task.json (or its folder), a spoken benchmark folder (`salad-synth
--benchmark`), one of the paper's six sets (`datasets_scripts.benchmarks.load_mc_items`), or a packaged task
(`datasets_scripts.packaged_tasks.load_task`): `evals:NAME` (an MC set of the OpenAI evals wheel, e.g.
`evals:socialiqa`), `arithmetic:N_digit_OP` (generated, e.g. `arithmetic:1_digit_multiplication`) or `bigbench:TASK`
(e.g. `bigbench:general_knowledge`, located by `datasets_scripts.corpora.bigbench_task_path`: $SALAD_BIGBENCH_DIR or
$SALAD_BIGBENCH_TARBALL, else a cached `bigbench==1.0.0` sdist, which the registries no longer serve).
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets_scripts.packaged_tasks import load_task

from .api import Benchmark

# Paper sets with a training split to draw shots from (the others use a seeded held-out part).
FEWSHOT_SPLITS = {"hellaswag": "train", "arc-challenge": "train", "openbookqa": "train", "piqa": "train"}


PACKAGED_PREFIXES = ("bigbench:", "evals:", "arithmetic:")


def benchmark_name(spec: str) -> str:
    if spec.startswith(PACKAGED_PREFIXES):
        return spec.split(":", 1)[1].strip("/").replace("/", "-")
    path = Path(spec)
    if path.name == "task.json":
        return path.parent.name
    if path.exists():
        return path.stem if path.is_file() else path.name
    return spec.split(":", 1)[0]


def load_benchmark(spec: str, split: str | None = None, fewshot_file: str | None = None) -> Benchmark:
    """Items (and the few-shot pool when the source has its own) of one `--benchmark` spec."""
    from datasets_scripts.benchmarks import _canonical, load_mc_items

    items = load_task(spec) if spec.startswith(PACKAGED_PREFIXES) else load_mc_items(spec, split)
    pool = None
    if fewshot_file:
        pool = load_mc_items(fewshot_file)
    else:
        paper_set = _canonical(spec.split(":", 1)[0]) if not os.path.exists(spec) else None
        if paper_set in FEWSHOT_SPLITS and ":" not in spec:
            pool = load_mc_items(spec, FEWSHOT_SPLITS[paper_set])
    if pool is not None:
        scored_ids = {str(item["id"]) for item in items}
        pool = [shot for shot in pool if str(shot["id"]) not in scored_ids]
    return Benchmark(benchmark_name(spec), items, pool)
