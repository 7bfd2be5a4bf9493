"""Prompt building for multiple-choice scoring: lm-eval-harness style few-shot prompts that fit the context.

An item is `{"id", "question", "choices": [...], "answer": int, "context"?: str}`. The scored prompt is

    <shot 1>\n\n<shot 2>\n\n ... Question: <question or <|audio|>>\nAnswer:

and each choice is scored as the continuation `" " + choice`. A shot is the same block with its correct answer
filled in, always as text (also in speech mode: only the scored question is spoken). Shots come from a pool that
never holds the scored item (checked by id and by question text), are drawn with a generator seeded by
(seed, item id) so every mode and every model sees the same shots for an item, and are dropped from the front
until the prompt plus the longest choice fits the context.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "\nAnswer:"
SHOT_SEPARATOR = "\n\n"
CHOICE_DELIMITER = " "


def validate_item(item: dict) -> None:
    """Raise ValueError naming the problem when `item` is not a well-formed MC item."""
    if not isinstance(item, dict):
        raise ValueError(f"An MC item must be a dict, got {type(item).__name__}.")
    for key in ("id", "question", "choices", "answer"):
        if key not in item:
            raise ValueError(f"MC item {item.get('id', '?')!r} has no {key!r} field.")
    choices = item["choices"]
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise ValueError(f"MC item {item['id']!r} needs at least two choices, got {choices!r}.")
    if any(not isinstance(c, str) or not c.strip() for c in choices):
        raise ValueError(f"MC item {item['id']!r} has an empty or non-string choice: {choices!r}.")
    answer = item["answer"]
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise ValueError(f"MC item {item['id']!r}: answer {answer!r} is not an index into its {len(choices)} choices.")


def question_text(item: dict) -> str:
    """The text that the spoken version reads aloud: the context (if any) followed by the question."""
    context = (item.get("context") or "").strip()
    question = item["question"].strip()
    return f"{context}\n{question}" if context else question


def format_query(item: dict, spoken_placeholder: str | None = None) -> str:
    """`Question: ...\\nAnswer:`; with `spoken_placeholder` the question (and context) is replaced by it.

    A spoken question follows "Question:" without the space: the spoken words carry their own word boundary (the
    span text a SALAD model is distilled on starts with it), so the text around the clip is tokenized as it is
    around the written question.
    """
    if spoken_placeholder is not None:
        return f"{QUESTION_PREFIX.rstrip()}{spoken_placeholder}{ANSWER_PREFIX}"
    return f"{QUESTION_PREFIX}{question_text(item)}{ANSWER_PREFIX}"


def format_continuation(choice: str) -> str:
    return CHOICE_DELIMITER + choice.strip()


def format_shot(item: dict) -> str:
    return format_query(item) + format_continuation(item["choices"][item["answer"]])


def join_prompt(shots: Sequence[dict], query: str) -> str:
    return "".join(format_shot(shot) + SHOT_SEPARATOR for shot in shots) + query


def _item_seed(seed: int, item_id: str) -> int:
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()
    return int(digest[:16], 16)


class FewShotSampler:
    """Draws up to `num_fewshot` shots per item from `pool`, never the scored item itself.

    Args:
        pool: MC items to draw shots from (a train/validation split, a held-out part of the file, or a
            --fewshot-file). Items are validated.
        num_fewshot: maximum number of shots (the paper: up to 5, as many as fit the context).
        seed: shots for an item depend only on (seed, item id), so all modes and models see the same ones.
    """

    def __init__(self, pool: Sequence[dict], num_fewshot: int = 5, seed: int = 1234):
        if num_fewshot < 0:
            raise ValueError(f"num_fewshot must be >= 0, got {num_fewshot}.")
        for item in pool:
            validate_item(item)
        if num_fewshot > 0 and not pool:
            raise ValueError("num_fewshot > 0 but the few-shot pool is empty; pass --fewshot-file or --num-fewshot 0.")
        self.pool = list(pool)
        self.num_fewshot = num_fewshot
        self.seed = seed

    def sample(self, item: dict) -> list[dict]:
        question = question_text(item)
        candidates = [
            shot for shot in self.pool if str(shot["id"]) != str(item["id"]) and question_text(shot) != question
        ]
        rng = random.Random(_item_seed(self.seed, str(item["id"])))
        return rng.sample(candidates, min(self.num_fewshot, len(candidates)))


def fit_shots(
    shots: Sequence[dict],
    build_prompt: Callable[[Sequence[dict]], str],
    count_tokens: Callable[[str], int],
    max_continuation_tokens: int,
    max_length: int,
) -> tuple[list[dict], str, int]:
    """Drop shots from the front until `count_tokens(prompt) + max_continuation_tokens <= max_length`.

    Returns (shots kept, prompt, prompt token count). Raises ValueError when even the zero-shot prompt does not
    fit (the caller decides whether to truncate text or skip the item).
    """
    shots = list(shots)
    while True:
        prompt = build_prompt(shots)
        num_tokens = count_tokens(prompt)
        if num_tokens + max_continuation_tokens <= max_length:
            return shots, prompt, num_tokens
        if not shots:
            raise ValueError(
                f"The zero-shot prompt ({num_tokens} tokens) plus the longest choice ({max_continuation_tokens} "
                f"tokens) exceeds the context of {max_length} tokens."
            )
        shots = shots[1:]


def split_fewshot_pool(items: Sequence[dict], pool_size: int, seed: int = 1234) -> tuple[list[dict], list[dict]]:
    """Seeded split of one file into (few-shot pool, items to score); the pool is excluded from scoring."""
    if pool_size < 0:
        raise ValueError(f"pool_size must be >= 0, got {pool_size}.")
    if pool_size >= len(items):
        raise ValueError(
            f"Cannot hold out {pool_size} few-shot examples from a benchmark of {len(items)} items; "
            "lower --num-fewshot/--fewshot-pool-size or pass --fewshot-file."
        )
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    pool_index = set(order[:pool_size])
    pool = [items[i] for i in sorted(pool_index)]
    scored = [items[i] for i in range(len(items)) if i not in pool_index]
    return pool, scored
