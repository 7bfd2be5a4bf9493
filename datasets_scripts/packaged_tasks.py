"""Multiple-choice tasks and narrative texts that every machine can install: named files of the OpenAI evals wheel
(`evals==3.0.1.post1`, MIT, read with `zipfile`) and generated arithmetic in BIG-bench's `arithmetic` format.

Task specs (`load_task`):

* `evals:NAME`: one of `EVALS_TASKS` (QuaRTz, Social IQa, MMLU-style questions, yes/no sets), each file's own
  question/choice layout parsed into `{"id", "question", "choices", "answer", "task"}`;
* `arithmetic:N_digit_OPERATION` (`1_digit_multiplication`, `2_digit_addition`, ...): every operand pair for one
  digit, a seeded sample of 200 pairs for more, each with the right result and six near-miss results as choices;
* `bigbench:TASK` or a bare BIG-bench task name: `datasets_scripts.corpora.bigbench_task_path` (the `bigbench==1.0.0`
  sdist, which the registries here no longer serve; `$SALAD_BIGBENCH_TARBALL` or `$SALAD_BIGBENCH_DIR` where a copy
  exists).
"""

from __future__ import annotations

import json
import random
import re
import zipfile
from pathlib import Path

from .corpora import evals_wheel

_EVALS_DATA = "evals/registry/data/"
_LETTER_LINE = re.compile(r"^[ \t]*([A-Z])[:.)]\s*(.+?)\s*$", re.M)
_INLINE_CHOICES = re.compile(r"\s*\b([A-Z]): (.+?)(?:;|\.?$)")
_YES_NO_INSTRUCTION = re.compile(r"\s*Answer (?:Yes or No|Y or N)\.?\s*$", re.I)
_YES_NO = {"yes": 0, "y": 0, "no": 1, "n": 1}


def _user_text(row: dict) -> str:
    return next(m["content"] for m in reversed(row["input"]) if m["role"] == "user")


def _lettered(question: str, answer: str) -> tuple[str, list[str], int] | None:
    """"question\n A: x\n B: y" (QuaRTz) or "question\nA. x\nB. y\nAnswer:" (MMLU-style): the last run of
    choice lines lettered A, B, C, ... in order (a stem's own "I." or "A." line is not a choice)."""
    question = re.sub(r"\s*Answer:\s*$", "", question)
    lines = list(_LETTER_LINE.finditer(question))
    starts = [k for k, m in enumerate(lines) if m.group(1) == "A"]
    if not starts:
        return None
    run = lines[starts[-1]:]
    letters = [m.group(1) for m in run]
    if len(run) < 2 or letters != [chr(ord("A") + k) for k in range(len(run))] or answer not in letters:
        return None
    return question[: run[0].start()].strip(), [m.group(2) for m in run], letters.index(answer)


def _inline(question: str, answer: str) -> tuple[str, list[str], int] | None:
    """"context question? A: x; B: y; C: z." (Social IQa)."""
    start = question.find(" A: ")
    if start < 0:
        return None
    found = _INLINE_CHOICES.findall(question[start:])
    if len(found) < 2 or answer not in [letter for letter, _ in found]:
        return None
    return question[:start].strip(), [text.strip() for _, text in found], [letter for letter, _ in found].index(answer)


def _yes_no(question: str, answer: str) -> tuple[str, list[str], int] | None:
    if answer.strip().lower() not in _YES_NO:
        return None
    return _YES_NO_INSTRUCTION.sub("", question).strip(), ["Yes", "No"], _YES_NO[answer.strip().lower()]


def _mmlu_row(row: dict) -> tuple[str, str]:
    return row["question"], row["answer"]


def _chat_row(row: dict) -> tuple[str, str]:
    return _user_text(row), str(row["ideal"])


# name -> (file under evals/registry/data/, row reader, choice parser)
EVALS_TASKS = {
    "quartz": ("quartz/samples.jsonl", _chat_row, _lettered),
    "socialiqa": ("theory_of_mind/socialiqa/test.jsonl", _chat_row, _inline),
    "mmlu": ("sandbagging/samples-all-large.jsonl", _mmlu_row, _lettered),
    "which_is_heavier": ("which_is_heavier/which_is_heavier.jsonl", _chat_row, _yes_no),
    "born_first": ("born_first/born_first.jsonl", _chat_row, _yes_no),
    "food": ("food/samples.jsonl", _chat_row, _yes_no),
}
# evals datasets whose texts are the demo's narrative (Stage I) domain: file, the text before this marker
PARABLES = ("parable-to-moral-match/parable-to-moral-match-en.jsonl", "\nWhich moral")


def _wheel(wheel=None) -> Path:
    path = Path(wheel) if wheel else evals_wheel()
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the evals wheel is not available ({path}); unset SALAD_EVALS_WHEEL=none or point it "
                                "at evals-3.0.1.post1-py3-none-any.whl")
    return path


def evals_rows(relative: str, wheel=None) -> list[dict]:
    """The JSON rows of `evals/registry/data/<relative>` in the evals wheel (lines that are not JSON skipped)."""
    with zipfile.ZipFile(_wheel(wheel)) as archive:
        try:
            lines = archive.read(_EVALS_DATA + relative).decode("utf-8").splitlines()
        except KeyError:
            raise FileNotFoundError(f"{_EVALS_DATA}{relative} is not in the evals wheel") from None
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def load_evals_task(name: str, wheel=None) -> list[dict]:
    """Items of one `EVALS_TASKS` set; rows whose layout does not parse (a few per file) are left out."""
    if name not in EVALS_TASKS:
        raise ValueError(f"unknown evals task {name!r}; choose from {', '.join(sorted(EVALS_TASKS))}")
    relative, read, parse = EVALS_TASKS[name]
    items = []
    for i, row in enumerate(evals_rows(relative, wheel)):
        parsed = parse(*read(row))
        if parsed and parsed[0] and len(set(parsed[1])) == len(parsed[1]):
            question, choices, answer = parsed
            items.append({"id": f"{name}-{i}", "question": question, "choices": choices, "answer": answer,
                          "task": name})
    if not items:
        raise ValueError(f"evals task {name!r}: no row of {relative} parses as a multiple-choice item")
    return items


def parables(wheel=None) -> list[str]:
    """The distinct English parables of evals' parable-to-moral-match (the story, without question and morals)."""
    relative, marker = PARABLES
    seen, stories = set(), []
    for row in evals_rows(relative, wheel):
        story = _user_text(row).split(marker, 1)[0].strip()
        if story and story not in seen:
            seen.add(story)
            stories.append(story)
    return stories


_OPERATIONS = {"addition": ("plus", lambda a, b: a + b), "subtraction": ("minus", lambda a, b: a - b),
               "multiplication": ("times", lambda a, b: a * b)}
_ARITHMETIC = re.compile(r"^([1-9])_digit_(addition|subtraction|multiplication)$")


def _near_misses(a: int, b: int, apply, right: int, negative: bool) -> list[int]:
    """Six results a slip would give (a neighbouring operand, a carry off by one or ten), then the next numbers up;
    negative ones only where the operation can give them."""
    candidates = [apply(a + 1, b), apply(a - 1, b), apply(a, b + 1), apply(a, b - 1), right + 1, right - 1,
                  right + 10, right - 10, apply(a + 1, b + 1), right + 2]
    candidates += [right + k for k in range(3, 12)]
    return list(dict.fromkeys(c for c in candidates if c != right and (negative or c >= 0)))[:6]


def arithmetic_items(task: str, seed: int = 0, sample: int = 200) -> list[dict]:
    """Generated arithmetic questions ("What is 7 times 3?") with the right result and six near misses as choices
    (the order seeded per item). One digit: every operand pair; more digits: `sample` seeded pairs."""
    match = _ARITHMETIC.match(task)
    if not match:
        raise ValueError(f"unknown arithmetic task {task!r}; use N_digit_addition, N_digit_subtraction or "
                         "N_digit_multiplication (N = 1..9)")
    digits, (word, apply) = int(match.group(1)), _OPERATIONS[match.group(2)]
    low, high = (0 if digits == 1 else 10 ** (digits - 1)), 10 ** digits - 1
    pairs = [(a, b) for a in range(low, high + 1) for b in range(low, high + 1)]
    if len(pairs) > sample:
        pairs = random.Random(f"{seed}/{task}").sample(pairs, sample)
    items = []
    for a, b in pairs:
        right = apply(a, b)
        rng = random.Random(f"{seed}/{task}/{a}/{b}")
        choices = [right] + _near_misses(a, b, apply, right, negative=word == "minus")
        rng.shuffle(choices)
        items.append({"id": f"{task}-{a}-{b}", "question": f"What is {a} {word} {b}?",
                      "choices": [str(c) for c in choices], "answer": choices.index(right), "task": task})
    return items


def load_task(spec: str, seed: int = 0) -> list[dict]:
    """Items of one task spec (module docstring); the `task` field names the spec without its prefix."""
    kind, sep, name = spec.partition(":")
    if sep and kind == "evals":
        return load_evals_task(name)
    if sep and kind == "arithmetic":
        return arithmetic_items(name, seed=seed)
    from .benchmarks import load_bigbench_task
    from .corpora import bigbench_task_path

    task = name if sep and kind == "bigbench" else spec
    return load_bigbench_task(bigbench_task_path(task), task_name=task.replace("/", "_"))


def pool_names(spec: str) -> list[str]:
    """The corpus names (`selection.text_pool` exclusions) whose texts are a task spec's own questions: an evals
    task's data folder; a BIG-bench task and its parent, since sibling subtasks share the question template (so
    generated arithmetic leaves out BIG-bench's `arithmetic`)."""
    kind, sep, name = spec.partition(":")
    if sep and kind == "evals":
        return [EVALS_TASKS[name][0].rsplit("/", 1)[0]] if name in EVALS_TASKS else []
    task = "arithmetic/" + name if sep and kind == "arithmetic" else (name if sep and kind == "bigbench" else spec)
    return sorted({task, task.split("/")[0]})


def task_file_stem(spec: str) -> str:
    """A file-name stem for a task spec ("evals:quartz" -> "evals_quartz")."""
    return re.sub(r"[:/]", "_", spec)
