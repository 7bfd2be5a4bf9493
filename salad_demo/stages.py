"""Cached, resumable pipeline stages: each stage's result is a JSON file written atomically when it finishes.

A second run of the pipeline reads the JSON of every finished stage instead of running it again, so a run that
was killed resumes at the first unfinished stage. Each record also keeps the stage's wall time and the process's
peak resident memory at its end, which the report shows.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

from spans import atomic_write_text

__all__ = ["StageRunner", "peak_rss_gib"]


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
        """name, seconds and peak memory of every finished stage, in the order they finished."""
        recs = [json.loads(p.read_text()) for p in self.dir.glob("*.json")]
        recs.sort(key=lambda r: r.get("finished_at", ""))
        return [{"stage": r["name"], "seconds": r["seconds"], "peak_rss_gib": r["peak_rss_gib"]} for r in recs]
