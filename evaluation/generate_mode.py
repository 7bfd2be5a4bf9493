"""`generate` mode: the model answers the spoken question freely (chat template, greedy); the answer is correct
when the right choice appears in it (normalized, whole words) and no other choice does."""

from __future__ import annotations

import re
import string

import torch

from modeling_salad import SAMPLING_RATE

INSTRUCTION = "Answer the question in the audio briefly."
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    text = text.lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _contains(haystack: str, needle: str) -> bool:
    return bool(needle) and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack) is not None


def judge_answer(answer: str, choices: list[str], correct_index: int) -> bool:
    """True when the normalized right choice occurs in the normalized answer and no other choice does.

    A wrong choice that is only part of the right one (e.g. "four" inside "twenty four") does not count against it.
    """
    text = normalize_answer(answer)
    right = normalize_answer(choices[correct_index])
    if not _contains(text, right):
        return False
    for i, choice in enumerate(choices):
        other = normalize_answer(choice)
        if i == correct_index or not other or other == right:
            continue
        if _contains(text, other) and not _contains(right, other):
            return False
    return True


def build_generation_messages(item: dict, audio, show_choices: bool = False) -> list[dict]:
    """The user turn: the spoken question (one audio part) followed by an instruction."""
    instruction = INSTRUCTION
    if show_choices:
        instruction += " Options: " + "; ".join(c.strip() for c in item["choices"]) + "."
    return [{"role": "user", "content": [
        {"type": "audio", "array": audio, "sampling_rate": SAMPLING_RATE},
        {"type": "text", "text": "\n" + instruction},
    ]}]


@torch.no_grad()
def generate_answer(model, processor, item: dict, audio, max_new_tokens: int = 32, show_choices: bool = False) -> str:
    """Greedy answer of `model` (chat template of `processor`) to the spoken `item` (`audio`: 16 kHz mono)."""
    messages = build_generation_messages(item, audio, show_choices)
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    return processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
