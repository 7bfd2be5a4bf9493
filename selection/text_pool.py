"""A broad multi-domain English text pool from packaged corpora (the offline stand-in for FineWeb-Edu, §3.3).

Sources, read in place without installing anything:

* BIG-bench ``task.json`` files from the ``bigbench==1.0.0`` sdist (``tarfile``): ~200 tasks, each a domain.
* OpenAI ``evals==3.0.1.post1`` wheel ``evals/registry/data/<name>/*.jsonl`` files (``zipfile``): ~600 files.

``datasets_scripts.corpora`` fetches them once (``bigbench_archive()``, ``evals_wheel()``); the pool reads the cached
copies or the paths given in ``PoolConfig``. Every text records
its ``domain`` (``bigbench/<task>[/<subtask>]`` or ``evals/<name>``) and ``source`` (the file inside the archive).
Evaluation tasks are excluded (``general_knowledge`` by default, plus any names passed in ``exclude``) so the
selection never trains on a benchmark it is scored on.

Filters keep texts a TTS voice can read: mostly ASCII letters, 5–120 words, no code/markup-heavy lines, deduped.
A per-domain cap keeps the pool broad rather than dominated by a few huge tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from datasets_scripts.corpora import bigbench_archive, evals_wheel
from spans.files import atomic_write_text

__all__ = ["PoolConfig", "build_text_pool", "iter_bigbench_texts", "iter_evals_texts", "save_pool", "load_pool",
           "DEFAULT_EXCLUDE"]

DEFAULT_EXCLUDE = ("general_knowledge",)
_WS = re.compile(r"\s+")
_PREFIX = re.compile(r"^(q|question|input|text|sentence|context)\s*:\s*", re.I)
_SUFFIX = re.compile(r"\s*(a|answer|output|label)\s*:\s*$", re.I)
_CODEY = re.compile(r"[{}<>\[\]=_\\|#`~^$@*]")


@dataclass
class PoolConfig:
    """How to build the packaged pool."""

    bigbench: str | None = field(default=None, metadata={"help": "bigbench-1.0.0.tar.gz path (None: the cached "
                                                                   "one, datasets_scripts.corpora)"})
    evals: str | None = field(default=None, metadata={"help": "evals-3.0.1.post1 wheel path (None: look)"})
    corpora: Sequence[str] = field(default=("bigbench", "evals"), metadata={
        "help": "which packaged corpora to read (each where its archive is given or cached)"})
    exclude: Sequence[str] = field(default=(), metadata={"help": "task / dataset names to leave out, in addition "
                                                                 "to DEFAULT_EXCLUDE (the evaluation tasks)"})
    max_per_domain: int = field(default=60, metadata={"help": "cap of texts per domain (breadth over size)"})
    min_words: int = field(default=5, metadata={"help": "shortest text kept, in words"})
    max_words: int = field(default=120, metadata={"help": "longest text kept, in words"})
    seed: int = field(default=0, metadata={"help": "seed of the per-domain subsampling"})


def clean_text(text: str) -> str:
    text = _WS.sub(" ", text).strip()
    text = _PREFIX.sub("", text)
    return _SUFFIX.sub("", text).strip()


_FUNCTION_WORDS = frozenset("the a an of to in is are was were and or for on with that this it be by as at from "
                            "what which who how do does not you i he she they we his her their".split())
_LETTER = re.compile(r"[A-Za-z]")
# Frequent ASCII function words of Dutch, German, French, Italian, Spanish, Portuguese and Polish that are not
# English words: BIG-bench and evals carry many non-English texts (MultiEmo's reviews, exam sets) that the English
# function-word check alone lets through ("in", "a" occur in Italian), and English TTS voices cannot read them.
_OTHER_LANGUAGE_WORDS = frozenset(
    "il gli di del della che non sono questo molto anche come "
    "um uma os da das dos que em com para mais foi "
    "het een en niet zijn voor ook maar dat deze wordt ik je "
    "der das und ist nicht ein eine mit sich auf zu dem sie es auch "
    "le les et est une du au pour pas sur qui dans ce cette avec sont "
    "nie jest jak ale od po "
    "el los las por una es del pero".split()) - _FUNCTION_WORDS
# Cached pools carry this in their name; bump it when a filter changes what the pool holds.
POOL_VERSION = 2
# A domain whose texts show other-language function words this often is dropped whole (its short texts slip
# through the per-text check).
OTHER_LANGUAGE_DOMAIN_SHARE = 0.2


def _word_counts(text: str) -> tuple[int, int]:
    words = [w.lower().strip(".,;:?!'\"()") for w in text.split()]
    return sum(w in _FUNCTION_WORDS for w in words), sum(w in _OTHER_LANGUAGE_WORDS for w in words)


def looks_foreign(text: str) -> bool:
    """At least two function words of another language, and at least half as many as English ones."""
    english, other = _word_counts(text)
    return other >= 2 and other >= english / 2


def is_speakable(text: str, min_words: int = 5, max_words: int = 120) -> bool:
    """English prose a TTS voice can read: word count in range, ASCII, ≥ 60 % letters, little markup, and
    ≥ 8 % English function words (drops word lists, digit grids) and not `looks_foreign`."""
    words = text.split()
    if not (min_words <= len(words) <= max_words) or not text.isascii():
        return False
    if len(_LETTER.findall(text)) < 0.6 * len(text) or len(_CODEY.findall(text)) > 2:
        return False
    english, _ = _word_counts(text)
    return english >= 0.08 * len(words) and not looks_foreign(text)


def _answer_of(example: dict) -> str | None:
    scores = example.get("target_scores")
    if isinstance(scores, dict) and scores:
        return max(scores, key=lambda k: scores[k])
    target = example.get("target")
    if isinstance(target, list) and target and isinstance(target[0], str):
        return target[0]
    return target if isinstance(target, str) else None


def _bigbench_text(example: dict) -> str | None:
    question = example.get("input")
    if not isinstance(question, str):
        return None
    text = clean_text(question)
    answer = _answer_of(example)
    if answer and len(answer.split()) <= 12 and answer.replace(" ", "").replace(".", "").isalpha():
        text = f"{text} {clean_text(answer)}"
    return text


def _excluded(name: str, exclude: set[str]) -> bool:
    parts = name.split("/")
    return any("/".join(parts[: i + 1]) in exclude for i in range(len(parts)))


def _keep(text: str | None, keep) -> bool:
    return bool(text) and (keep is None or keep(text))


def iter_bigbench_texts(tar_path: str | os.PathLike, exclude: Sequence[str] = DEFAULT_EXCLUDE,
                        limit_per_task: int | None = None, keep=None, seed: int = 0) -> Iterator[dict]:
    """Yield ``{"text", "domain", "source"}`` from every BIG-bench ``task.json`` in the sdist (streamed).

    With ``limit_per_task``, examples are visited in a seeded random order and at most that many texts passing
    ``keep`` (a predicate) are yielded per task: a uniform subsample without converting every example."""
    exclude_set = set(exclude)
    marker = "/benchmark_tasks/"
    with tarfile.open(tar_path, "r|gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith("/task.json") or marker not in member.name:
                continue
            task = member.name.split(marker, 1)[1].rsplit("/task.json", 1)[0]
            if _excluded(task, exclude_set):
                continue
            try:
                data = json.load(tar.extractfile(member))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            examples = data.get("examples", []) if isinstance(data, dict) else []
            if not isinstance(examples, list):
                continue
            if limit_per_task is not None:
                examples = examples[:]
                random.Random(f"{seed}/{task}").shuffle(examples)
            kept = 0
            for example in examples:
                text = _bigbench_text(example) if isinstance(example, dict) else None
                if _keep(text, keep):
                    yield {"text": text, "domain": f"bigbench/{task}", "source": member.name.split("/", 1)[1]}
                    kept += 1
                    if limit_per_task is not None and kept >= limit_per_task:
                        break


def _evals_text(row: dict) -> str | None:
    value = row.get("input", row.get("question", row.get("prompt")))
    if isinstance(value, list):
        parts = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        parts = [p for p in parts if isinstance(p, str)]
        value = " ".join(parts) if parts else None
    return clean_text(value) if isinstance(value, str) else None


def iter_evals_texts(wheel_path: str | os.PathLike, exclude: Sequence[str] = (), limit_per_task: int | None = None,
                     keep=None, seed: int = 0) -> Iterator[dict]:
    """Yield ``{"text", "domain", "source"}`` from the evals wheel's ``registry/data/<name>/*.jsonl`` files
    (``limit_per_task`` / ``keep`` / ``seed`` as in :func:`iter_bigbench_texts`, per file)."""
    exclude_set = set(exclude)
    marker = "evals/registry/data/"
    with zipfile.ZipFile(wheel_path) as wheel:
        for name in sorted(wheel.namelist()):
            if not name.startswith(marker) or not name.endswith(".jsonl"):
                continue
            dataset = name[len(marker):].rsplit("/", 1)[0]
            if _excluded(dataset, exclude_set):
                continue
            lines = wheel.read(name).splitlines()
            if limit_per_task is not None:
                random.Random(f"{seed}/{name}").shuffle(lines)
            kept = 0
            for line in lines:
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                text = _evals_text(row) if isinstance(row, dict) else None
                if _keep(text, keep):
                    yield {"text": text, "domain": f"evals/{dataset}", "source": name}
                    kept += 1
                    if limit_per_task is not None and kept >= limit_per_task:
                        break


def _text_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def build_text_pool(config: PoolConfig | None = None, **overrides) -> list[dict]:
    """Build the pool: rows ``{"id", "text", "domain", "source"}``, deduplicated, at most ``max_per_domain`` per
    domain (seeded uniform subsample), ordered by domain then id; domains that are mostly another language
    (``OTHER_LANGUAGE_DOMAIN_SHARE``) are left out. Raises ValueError when no archive is found."""
    config = config or PoolConfig(**overrides)
    if config.max_per_domain < 1 or config.min_words < 1 or config.max_words < config.min_words:
        raise ValueError("max_per_domain, min_words must be >= 1 and max_words >= min_words")
    unknown = sorted(set(config.corpora) - {"bigbench", "evals"})
    if unknown:
        raise ValueError(f"unknown corpora {unknown}; choose from bigbench, evals")
    archives = {"bigbench": (config.bigbench, bigbench_archive, iter_bigbench_texts),
                "evals": (config.evals, evals_wheel, iter_evals_texts)}
    streams = []

    def speakable(text: str) -> bool:
        return is_speakable(text, config.min_words, config.max_words)

    for label, (given, find, reader) in archives.items():
        path = (Path(given) if given else find(download=False)) if label in config.corpora else None
        if path is not None:
            if not path.is_file():
                raise ValueError(f"{label} archive {path} does not exist")
            # 3x the cap per file leaves room for duplicates while skipping most of the huge files' parsing
            exclude = tuple(DEFAULT_EXCLUDE) + tuple(config.exclude)
            streams.append(reader(path, exclude, limit_per_task=3 * config.max_per_domain, keep=speakable,
                                  seed=config.seed))
    if not streams:
        raise ValueError("no packaged corpus found: fetch them once with datasets_scripts.corpora "
                         "(bigbench_archive(), evals_wheel()) or pass PoolConfig(bigbench=..., evals=...)")
    seen: set[str] = set()
    by_domain: dict[str, list[dict]] = {}
    for stream in streams:
        for row in stream:
            key = row["text"].lower()
            if key in seen:
                continue
            seen.add(key)
            by_domain.setdefault(row["domain"], []).append(row)
    for domain in [d for d, rows in by_domain.items()
                   if sum(_word_counts(r["text"])[1] > 0 for r in rows) >= OTHER_LANGUAGE_DOMAIN_SHARE * len(rows)]:
        del by_domain[domain]
    rng = random.Random(config.seed)
    pool = []
    for domain in sorted(by_domain):
        rows = by_domain[domain]
        if len(rows) > config.max_per_domain:
            rows = rng.sample(rows, config.max_per_domain)
        pool.extend({"id": _text_id(r["text"]), **r} for r in sorted(rows, key=lambda r: _text_id(r["text"])))
    return pool


def save_pool(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write rows as JSONL atomically."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def load_pool(path: str | os.PathLike, text_field: str = "text") -> list[dict]:
    """Read a pool: JSONL (``text`` + optional ``domain``/``id``), plain ``.txt`` (one text per line) or a
    ``datasets`` folder saved with ``save_to_disk``. Returns rows with ``id``, ``text``, ``domain``, ``source``."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"text pool {path} does not exist")
    if path.is_dir():
        from datasets import load_from_disk

        raw = list(load_from_disk(str(path)))
    elif path.suffix == ".txt":
        raw = [{text_field: line.strip()} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for i, row in enumerate(raw):
        text = row.get(text_field)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: row {i} has no non-empty {text_field!r} field")
        rows.append({"id": str(row.get("id") or _text_id(text)), "text": text.strip(),
                     "domain": str(row.get("domain") or "unknown"), "source": str(row.get("source") or path.name)})
    return rows
