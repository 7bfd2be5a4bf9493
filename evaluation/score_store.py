"""Scores and transcripts kept on disk between processes, like lm-evaluation-harness' `--use_cache`.

Only what never depends on audio features is stored: the log-likelihoods of text prompts (the base LLM's text and
cascade scores, a SALAD model's text scores) and the cascade's ASR transcripts. Each entry is keyed by everything
that determines it: the model's weights and config, the exact token ids of prompt and choices (so a change in
prompt formatting or few-shot sampling misses the store instead of reading a stale score), and for transcripts the
clip's samples and the decoding settings. A killed evaluation resumes without recomputing them, and a new process
evaluating the next checkpoint reuses the base LLM's scores.

sqlite (standard library) rather than a folder of files: one file, atomic commits, safe when two processes share
it, and fast for the thousands of small entries an evaluation writes. Values are JSON, never pickles, so reading a
store cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import numpy as np

STORE_FORMAT = 1


def model_identity(model) -> str:
    """Digest of what a model's log-likelihoods depend on besides its input ids: weights, class and config."""
    from spans.encoder_states import weights_digest

    config = getattr(model, "config", None)
    described = _without_paths(config.to_dict()) if hasattr(config, "to_dict") else repr(config)
    return _digest([type(model).__name__, weights_digest(model), described])


# where the model was loaded from is not what it computes: a copied or moved checkpoint keeps its scores
_PATH_FIELDS = ("_name_or_path", "_model_name_or_path")


def _without_paths(config: dict) -> dict:
    return {key: _without_paths(value) if isinstance(value, dict) else value
            for key, value in config.items() if key not in _PATH_FIELDS}


def clip_digest(clip: np.ndarray) -> str:
    samples = np.ascontiguousarray(np.asarray(clip, dtype=np.float32))
    return hashlib.sha256(samples.tobytes()).hexdigest() + f":{samples.shape[0]}"


def _digest(parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class ScoreStore:
    """A persistent {key parts -> JSON value} map in one sqlite file (`path`, created with its folder).

    `get(kind, parts)` returns the stored value or None; `put(kind, parts, value)` commits at once, so nothing
    written before a crash is lost. `kind` separates the namespaces ("loglikelihood", "transcript")."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"The score store {self.path} exists and is not a file.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT, value TEXT)")
            self._db.commit()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"The score store {self.path} is not a readable sqlite file ({error}); delete it "
                             "or pass another path.") from None

    def _key(self, kind: str, parts) -> str:
        return _digest([STORE_FORMAT, kind, parts])

    def get(self, kind: str, parts):
        row = self._db.execute("SELECT value FROM entries WHERE key = ?", (self._key(kind, parts),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, kind: str, parts, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO entries (key, kind, value) VALUES (?, ?, ?)",
                         (self._key(kind, parts), kind, json.dumps(value)))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
