"""Cached, resumable pipeline stages: each stage's result is a JSON file written atomically when it finishes.

A second run of the pipeline reads the JSON of every finished stage instead of running it again, so a run that
was killed resumes at the first unfinished stage. Each record also keeps the stage's wall time and the process's
peak resident memory at its end, which the report shows.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from spans import atomic_write_text

__all__ = ["ParallelStages", "StageRunner", "busy_seconds", "peak_rss_gib"]


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class StageRunner:
    """Runs named stages once; `run(name, fn)` returns fn's JSON-serializable result, cached in `stages/`."""

    def __init__(self, root: str | os.PathLike, log: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.dir = self.root / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def record_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def done(self, name: str) -> bool:
        return self.record_path(name).is_file()

    def record(self, name: str) -> dict:
        return json.loads(self.record_path(name).read_text())

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.done(name):
            rec = self.record(name)
            self.log(f"[{name}] done earlier ({rec['seconds']:.0f} s) — reusing")
            return rec["result"]
        self.log(f"[{name}] running")
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        rec = {"name": name, "seconds": seconds, "peak_rss_gib": peak_rss_gib(), "result": result,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(self.record_path(name), json.dumps(rec, indent=2, default=str))
        self.log(f"[{name}] finished in {seconds:.1f} s (peak RSS {rec['peak_rss_gib']:.2f} GiB)")
        return result

    def timings(self) -> list[dict]:
        """name, seconds, peak memory and end time of every finished stage, in the order they finished."""
        recs = [json.loads(p.read_text()) for p in self.dir.glob("*.json")]
        recs.sort(key=lambda r: r.get("finished_at", ""))
        return [{"stage": r["name"], "seconds": r["seconds"], "peak_rss_gib": r["peak_rss_gib"],
                 "finished_at": r["finished_at"]} for r in recs]


def busy_seconds(records: Sequence[Mapping]) -> float:
    """Seconds during which at least one of the stage records (`seconds`, `finished_at`) was running: stages that
    ran side by side count once, and the pause of a run that was stopped and resumed does not count."""
    spans = []
    for rec in records:
        end = datetime.strptime(rec["finished_at"], "%Y-%m-%dT%H:%M:%S").timestamp()
        spans.append((end - rec["seconds"], end))
    busy, reached = 0.0, float("-inf")
    for start, end in sorted(spans):
        busy += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    return busy


class ParallelStages:
    """Runs stages as child processes, up to `jobs` at once, each as soon as the stages it needs are done.

    On a small CPU two stages side by side, one thread each, get through more work than one stage on every core
    (a 135M model's forward passes do not keep two cores busy), so independent stages (an evaluation beside a
    training run) overlap. A stage that starts alone gets every core: a stage can only become ready when another
    finishes, so nothing can start beside it later. Children write their stage records through their own
    `StageRunner`; their output goes to OUT/logs/<stage>.log.

    Args:
        runner: the run folder's `StageRunner` (what is done already).
        needs: stage -> the stages whose results it reads.
        command: (stage, threads) -> the child's argv, which runs that one stage.
        jobs: stages at most at once; cores: CPU threads shared among them.
    """

    def __init__(self, runner: StageRunner, needs: Mapping[str, Sequence[str]],
                 command: Callable[[str, int], list[str]], jobs: int = 2, cores: int | None = None,
                 poll_seconds: float = 0.5):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.runner, self.needs, self.command, self.jobs = runner, needs, command, jobs
        self.cores, self.poll_seconds = cores or os.cpu_count() or 1, poll_seconds
        self.logs = runner.root / "logs"

    def run(self, stages: Sequence[str]) -> None:
        """Run `stages` (in priority order: the first ready one starts first); raises when one fails, after the
        stages already running have finished (their work is kept)."""
        self._check_needs(stages)
        for stage in (s for s in stages if self.runner.done(s)):
            self.runner.log(f"[{stage}] done earlier ({self.runner.record(stage)['seconds']:.0f} s) — reusing")
        pending = [s for s in stages if not self.runner.done(s)]
        running: dict[str, tuple[subprocess.Popen, float]] = {}
        failed: list[str] = []
        while running or (pending and not failed):
            # a need counts once its child has exited, so a stage that follows it alone gets every core
            ready = [] if failed else [s for s in pending
                                       if all(self.runner.done(n) and n not in running for n in self.needs.get(s, ()))]
            if not ready and not running:
                raise RuntimeError(f"stages {pending} wait for stages that never finished")
            starting = ready[: self.jobs - len(running)]
            threads = self.cores // max(1, len(running) + len(starting)) or 1  # the cores split among all running
            for stage in starting:
                pending.remove(stage)
                running[stage] = self._start(stage, threads)
            time.sleep(self.poll_seconds)
            failed += self._reap(running)
        if failed:
            tails = "\n".join(f"--- {self.logs / f'{s}.log'} (last lines):\n{self._tail(s)}" for s in failed)
            raise RuntimeError(f"stage(s) {', '.join(failed)} failed\n{tails}")

    def _check_needs(self, stages: Sequence[str]) -> None:
        for stage in stages:
            missing = [n for n in self.needs.get(stage, ()) if n not in stages and not self.runner.done(n)]
            if missing:
                raise ValueError(f"stage {stage!r} needs {missing}, which have not run; run them first "
                                 f"(--stages {','.join(missing)})")

    def _start(self, stage: str, threads: int) -> tuple[subprocess.Popen, float]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{stage}.log"
        self.runner.log(f"[{stage}] running in a child process ({threads} thread(s)); log: {log}")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with open(log, "w") as handle:
            child = subprocess.Popen(self.command(stage, threads), stdout=handle, stderr=subprocess.STDOUT, env=env)
        return child, time.perf_counter()

    def _reap(self, running: dict) -> list[str]:
        """Forget the children that exited; the names of those that failed."""
        failed = []
        for stage, (child, start) in list(running.items()):
            if child.poll() is None:
                continue
            del running[stage]
            ok = child.returncode == 0 and self.runner.done(stage)
            self.runner.log(f"[{stage}] {'finished' if ok else 'FAILED'} after {time.perf_counter() - start:.0f} s")
            if not ok:
                failed.append(stage)
        return failed

    def _tail(self, stage: str, lines: int = 20) -> str:
        path = self.logs / f"{stage}.log"
        text = path.read_text(errors="replace").replace("\r", "\n") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])
