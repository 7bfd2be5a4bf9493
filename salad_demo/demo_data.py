"""Which packaged texts go where in the demo (never overlapping):

* evaluation: packaged multiple-choice tasks (`DemoPreset.eval_tasks`, `datasets_scripts.packaged_tasks` specs),
  short questions only; never trained on.
* Stage I (narrow domain, narrative text): the English parables of the evals wheel's parable-to-moral-match (the
  question and the morals stripped), cut at sentence ends into documents of about `document_words` words. One
  part becomes speech/text span documents, a disjoint part the text-only replay set. With
  `DemoPreset.stage1_numeric_documents`, Stage I also speaks broad-pool texts that contain written digits
  (`numeric_documents`).
* Stage II (broad pool): every other OpenAI evals file (`selection.text_pool`), with the evaluation tasks and the
  narrative task excluded.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from datasets_scripts.packaged_tasks import load_task, parables, pool_names
from datasets_scripts.tts import stable_hash

from .presets import NARRATIVE_SOURCE, NARRATIVE_TASKS

_SENTENCE_SPLIT = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+")
_WS = re.compile(r"\s+")
# Unicode punctuation flite/festival read badly -> ASCII
_ASCII = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": " - ", "…": "..."})


def _clean(text: str) -> str:
    return _WS.sub(" ", text.translate(_ASCII)).strip()


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(_clean(text)) if s]


def chunk_sentences(text: str, words: int) -> list[str]:
    """Consecutive sentences grouped into chunks of about `words` words (a long sentence is its own chunk)."""
    chunks, current, count = [], [], 0
    for sentence in _sentences(text):
        n = len(sentence.split())
        if current and count + n > words:
            chunks.append(" ".join(current))
            current, count = [], 0
        current.append(sentence)
        count += n
    if current:
        chunks.append(" ".join(current))
    return chunks


def narrative_stories() -> list[dict]:
    """Every narrative text of the Stage I domain: {"id", "text", "source"} (the evals wheel's English parables,
    at least 8 words each)."""
    stories = [{"id": f"parable-{i}", "text": _clean(text), "source": NARRATIVE_SOURCE}
               for i, text in enumerate(parables())]
    return [s for s in stories if len(s["text"].split()) >= 8]


def narrative_documents(num_speech: int, num_replay: int, words: int, seed: int = 0) -> tuple[list, list]:
    """(speech documents, replay documents): disjoint story chunks, drawn with a balanced mix of the sources.

    Each source is shuffled (seeded) and chunked; documents are taken round-robin across sources so the narrow
    domain keeps all three kinds of narrative even in a small run."""
    by_source: dict[str, list[dict]] = {}
    for story in narrative_stories():
        by_source.setdefault(story["source"], []).append(story)
    queues = []
    for source in sorted(by_source):
        stories = sorted(by_source[source], key=lambda s: stable_hash("story", seed, s["id"]))
        docs = [{"id": f"{s['id']}-{k}", "text": chunk, "source": source}
                for s in stories for k, chunk in enumerate(chunk_sentences(s["text"], words))
                if len(chunk.split()) >= 8]
        queues.append(docs)
    wanted = num_speech + num_replay
    picked = []
    while len(picked) < wanted and any(queues):
        for queue in queues:
            if queue and len(picked) < wanted:
                picked.append(queue.pop(0))
    if len(picked) < wanted:
        raise ValueError(f"the narrative sources give only {len(picked)} documents, {wanted} wanted")
    random.Random(seed).shuffle(picked)
    return picked[:num_speech], picked[num_speech:]


_DIGIT = re.compile(r"\d")
# a numeral of one digit standing alone ("3 apples", not "3.5", "30" or "3,000"): spoken, it is one of "zero".."nine",
# the numbers Whisper most often writes as words
_ONE_DIGIT_NUMERAL = re.compile(r"(?<![\d.,])\b\d\b(?![.,]\d)")


def numeric_documents(pool_rows: list[dict], count: int, words: int, seed: int = 0,
                      one_digit_only: bool = False) -> list[dict]:
    """`count` span documents of about `words` words from the broad-pool texts that contain written digits
    (with `one_digit_only`, a standalone one-digit numeral such as the "3" of "3 apples").

    Spoken, a digit becomes a word ("0 times 8" is heard as "zero times eight", and Whisper writes either), so these
    are the texts where what the teacher reads and what the student hears differ in form though not in meaning,
    which narrative text hardly has. Texts of one domain are joined in a seeded order; documents are taken
    round-robin across domains so that no single task dominates."""
    pattern = _ONE_DIGIT_NUMERAL if one_digit_only else _DIGIT
    by_domain: dict[str, list[dict]] = {}
    for row in pool_rows:
        if pattern.search(row["text"]):
            by_domain.setdefault(row["domain"], []).append(row)
    queues = [_joined_documents(sorted(rows, key=lambda r: stable_hash("numeric", seed, r["id"])), words, domain)
              for domain, rows in sorted(by_domain.items())]
    picked = []
    while len(picked) < count and any(queues):
        picked += [queue.pop(0) for queue in queues if queue][: count - len(picked)]
    if len(picked) < count:
        raise ValueError(f"the broad pool gives only {len(picked)} documents with digits, {count} wanted")
    random.Random(seed).shuffle(picked)
    return picked


def _joined_documents(rows: list[dict], words: int, domain: str) -> list[dict]:
    """Consecutive texts of one domain joined into documents of about `words` words (at least two texts each)."""
    docs, current = [], []
    for row in rows:
        current.append(_clean(row["text"]))
        if len(current) > 1 and sum(len(t.split()) for t in current) >= words:
            docs.append(current)
            current = []
    return [{"id": f"numeric-{stable_hash(domain, ' '.join(texts)):016x}", "text": " ".join(texts), "source": domain}
            for texts in docs]


def eval_items(task: str, count: int, max_question_words: int, seed: int = 0) -> list[dict]:
    """Up to `count` items of an MC task spec (`datasets_scripts.packaged_tasks.load_task`) with short questions
    (seeded sample, stable order)."""
    items = load_task(task, seed=seed)
    short = [dict(it, question=_clean(it["question"])) for it in items
             if len(it["question"].split()) <= max_question_words and len(it["choices"]) >= 2]
    short.sort(key=lambda it: stable_hash("eval", seed, it["id"]))
    return short[:count]


def pool_exclusions(eval_tasks) -> list[str]:
    """Corpus names the broad Stage II pool leaves out: those of the evaluation tasks
    (`datasets_scripts.packaged_tasks.pool_names`) and the narrative (Stage I) tasks."""
    names = {name for task in eval_tasks for name in pool_names(task)}
    return sorted(names | set(NARRATIVE_TASKS))


def write_jsonl(rows, path: Path) -> Path:
    from spans import atomic_write_text

    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return Path(path)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
