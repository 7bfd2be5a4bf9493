"""Resolve `--benchmark` specs to items + few-shot pools.

Spec forms: a JSONL file, a BIG-bench task.json (or its folder), a spoken benchmark folder (`salad-synth
--benchmark`), one of the paper's six sets (`datasets_scripts.benchmarks.load_mc_items`), or `bigbench:TASK`
(e.g. `bigbench:general_knowledge`, `bigbench:elementary_math_qa/question_only`), found in the vendored
salad_demo/data/bigbench/, in $SALAD_BIGBENCH_DIR, or read from the `bigbench==1.0.0` sdist tarball
($SALAD_BIGBENCH_TARBALL or <repo>/.cache/downloads/bigbench-1.0.0.tar.gz; get it with
`pip download --no-deps -d .cache/downloads bigbench==1.0.0`).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from .api import Benchmark

REPO_ROOT = Path(__file__).resolve().parent.parent
BIGBENCH_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/{task}/task.json"
# Paper sets with a training split to draw shots from (the others use a seeded held-out part).
FEWSHOT_SPLITS = {"hellaswag": "train", "arc-challenge": "train", "openbookqa": "train", "piqa": "train"}


def _bigbench_dirs() -> list[Path]:
    dirs = [REPO_ROOT / "salad_demo" / "data" / "bigbench"]
    if os.environ.get("SALAD_BIGBENCH_DIR"):
        dirs.insert(0, Path(os.environ["SALAD_BIGBENCH_DIR"]))
    return dirs


def _bigbench_tarball() -> Path:
    return Path(os.environ.get("SALAD_BIGBENCH_TARBALL") or REPO_ROOT / ".cache" / "downloads" / "bigbench-1.0.0.tar.gz")


def _cache_root() -> Path:
    from datasets_scripts.cache import cache_root

    return cache_root()


def bigbench_task_path(task: str) -> Path:
    """Path of BIG-bench `task`'s task.json, extracting it from the sdist tarball once if needed."""
    task = task.strip().strip("/")
    if not task or ".." in task.split("/"):
        raise ValueError(f"Bad BIG-bench task name {task!r}.")
    for root in _bigbench_dirs():
        for candidate in (root / task / "task.json", root / f"{task}.json"):
            if candidate.is_file():
                return candidate
    extracted = _cache_root() / "bigbench" / task / "task.json"
    if extracted.is_file():
        return extracted
    tarball = _bigbench_tarball()
    if not tarball.is_file():
        raise ValueError(
            f"BIG-bench task {task!r} not found in {', '.join(map(str, _bigbench_dirs()))} and no sdist at {tarball}; "
            "run `pip download --no-deps -d .cache/downloads bigbench==1.0.0` or set SALAD_BIGBENCH_DIR."
        )
    with tarfile.open(tarball) as archive:
        try:
            member = archive.extractfile(BIGBENCH_MEMBER.format(task=task))
        except KeyError:
            raise ValueError(f"BIG-bench has no task {task!r} (looked for {BIGBENCH_MEMBER.format(task=task)}).") from None
        data = member.read()
    extracted.parent.mkdir(parents=True, exist_ok=True)
    tmp = extracted.with_suffix(".json.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, extracted)
    return extracted


def prefetch_bigbench(tasks) -> None:
    """Extract every missing task.json of `tasks` from the sdist in one pass over the tarball (a pass per task
    would re-read 358 MB of gzip each time)."""
    missing = {}
    for task in tasks:
        task = task.strip().strip("/")
        try:
            if any((root / task / "task.json").is_file() for root in _bigbench_dirs()):
                continue
        except OSError:
            pass
        target = _cache_root() / "bigbench" / task / "task.json"
        if not target.is_file():
            missing[BIGBENCH_MEMBER.format(task=task)] = target
    if not missing or not _bigbench_tarball().is_file():
        return
    with tarfile.open(_bigbench_tarball()) as archive:
        for member in archive:
            target = missing.pop(member.name, None)
            if target is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".json.tmp")
            tmp.write_bytes(archive.extractfile(member).read())
            os.replace(tmp, target)
            if not missing:
                break


def benchmark_name(spec: str) -> str:
    if spec.startswith("bigbench:"):
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

    source = str(bigbench_task_path(spec.split(":", 1)[1])) if spec.startswith("bigbench:") else spec
    items = load_mc_items(source, split)
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
