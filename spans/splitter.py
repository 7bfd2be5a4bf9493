"""THE span splitter: a text document -> alternating speech and text spans (the SALAD data model).

Speech spans are 5-15 words and text spans 10-30 words by default (the paper's Stage I interleaving). Each span
ends at a sentence boundary when one lies within its allowed length, else at a word boundary. The split is a pure
function of (text, seed, ranges): `random.Random(seed)` draws the lengths and the kind of the first span.
Joining the span texts with single spaces gives back the document with its whitespace normalized.
"""

from __future__ import annotations

import random

SENTENCE_END = (".", "!", "?", ".\"", "!\"", "?\"", ".'", ".)", ";")
SPEECH, TEXT = "speech", "text"


def _check_range(name: str, bounds) -> tuple[int, int]:
    try:
        low, high = (int(b) for b in bounds)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a (min, max) pair of word counts, got {bounds!r}") from err
    if not 1 <= low <= high:
        raise ValueError(f"{name} must satisfy 1 <= min <= max, got {bounds!r}")
    return low, high


def _span_end(words: list[str], start: int, low: int, high: int, target: int) -> int:
    """End index (exclusive) of a span starting at `start`: the sentence end within [low, high] words closest to
    `target`, else `start + target` (clipped to the document)."""
    remaining = len(words) - start
    if remaining <= high:
        return len(words)
    candidates = [n for n in range(low, high + 1) if words[start + n - 1].endswith(SENTENCE_END)]
    if candidates:
        return start + min(candidates, key=lambda n: (abs(n - target), n))
    return start + target


def split_into_spans(text: str, seed: int = 0, speech_words=(5, 15), text_words=(10, 30),
                     first: str | None = None) -> list[dict]:
    """Split `text` into alternating spans [{"text": str, "kind": "speech"|"text"}, ...].

    seed: any int (use a per-document seed, e.g. stable_hash(run_seed, doc_id), for per-document variety).
    first: "speech" or "text" to fix the first span's kind (default: drawn from the seed).
    The last span may be shorter than its minimum (the document ran out). A document where no speech span is
    followed by text (a short question that fits one span, or one that ends on its only speech span) gets its
    last span split into speech + a text tail (its last third, at least one word), so there is always text to
    distill after speech; a one-word document stays a single span.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("Cannot split an empty document into spans")
    ranges = {SPEECH: _check_range("speech_words", speech_words), TEXT: _check_range("text_words", text_words)}
    if first not in (None, SPEECH, TEXT):
        raise ValueError(f"first must be 'speech', 'text' or None, got {first!r}")
    rng = random.Random(seed)
    kind = first or (SPEECH if rng.random() < 0.5 else TEXT)
    words = text.split()
    spans, start = [], 0
    while start < len(words):
        low, high = ranges[kind]
        end = _span_end(words, start, low, high, rng.randint(low, high))
        spans.append({"text": " ".join(words[start:end]), "kind": kind})
        start = end
        kind = TEXT if kind == SPEECH else SPEECH
    if not any(a["kind"] == SPEECH and b["kind"] == TEXT for a, b in zip(spans, spans[1:])):
        # nothing would be distilled after speech: the last span (or the only one) ends in a text tail
        last = spans[-1]["text"].split()
        if len(last) >= 2 and (spans[-1]["kind"] == SPEECH or len(spans) == 1):
            cut = len(last) - max(1, len(last) // 3)
            spans[-1:] = [{"text": " ".join(last[:cut]), "kind": SPEECH}, {"text": " ".join(last[cut:]), "kind": TEXT}]
    return spans
