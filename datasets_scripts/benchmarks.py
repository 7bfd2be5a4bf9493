"""Multiple-choice items {"id", "question", "choices", "answer" (0-based), "context"?} from every source SALAD
evaluates on: local JSONL, BIG-bench task.json, the paper's six sets (Hub or a local copy in the set's own schema),
and spoken benchmark folders written by `salad-synth --benchmark` (their items add "audio"/"context_audio").

    load_mc_items("items.jsonl")                 # {"id","question","choices","answer","context"?} (+ extra fields)
    load_mc_items("path/to/task.json")           # BIG-bench multiple_choice (target_scores)
    load_mc_items("hellaswag")                   # Hub parquet (needs network), default split
    load_mc_items("hellaswag:local/val.jsonl")   # a local copy in HellaSwag's schema
    load_mc_items("spoken_folder/")              # written by salad-synth --benchmark
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path


def _letter_index(value, n_choices: int, labels=None) -> int:
    """0-based index from a letter ("B"), a 1-based digit string ("2" when labels are digits) or an int."""
    if labels is not None:
        labels = [str(label).strip() for label in labels]
        if str(value).strip() in labels:
            return labels.index(str(value).strip())
    if isinstance(value, str) and value.strip().upper() in string.ascii_uppercase[:n_choices]:
        return string.ascii_uppercase.index(value.strip().upper())
    raise ValueError(f"Cannot read answer {value!r} for {n_choices} choices (labels {labels})")


def _hellaswag(row, i):
    return {"id": str(row.get("ind", i)), "question": row["ctx"], "choices": list(row["endings"]),
            "answer": int(row["label"]), "activity_label": row.get("activity_label")}


def _arc(row, i):  # ARC and OpenBookQA share {"choices": {"text": [...], "label": [...]}, "answerKey"}
    question = row["question"] if "question" in row else row["question_stem"]
    if isinstance(question, dict):  # the original ARC/OBQA JSONL nests {"stem", "choices": [{"text","label"}]}
        texts = [c["text"] for c in question["choices"]]
        labels = [c["label"] for c in question["choices"]]
        question = question["stem"]
    else:
        texts, labels = list(row["choices"]["text"]), list(row["choices"]["label"])
    item = {"id": str(row.get("id", i)), "question": question, "choices": texts,
            "answer": _letter_index(row["answerKey"], len(texts), labels)}
    if row.get("fact1"):
        item["fact1"] = row["fact1"]
    return item


def _piqa(row, i):
    return {"id": str(row.get("id", i)), "question": row["goal"], "choices": [row["sol1"], row["sol2"]],
            "answer": int(row["label"])}


def _storycloze(row, i):
    if "input_sentence_1" in row:  # LSDSem/story_cloze (datasets) schema
        keys, endings = [f"input_sentence_{k}" for k in range(1, 5)], [row["sentence_quiz1"], row["sentence_quiz2"]]
        answer, story_id = int(row["answer_right_ending"]) - 1, row.get("story_id", i)
    else:  # the original CSV columns
        keys, endings = [f"InputSentence{k}" for k in range(1, 5)], [row["RandomFifthSentenceQuiz1"],
                                                                    row["RandomFifthSentenceQuiz2"]]
        answer, story_id = int(row["AnswerRightEnding"]) - 1, row.get("InputStoryid", i)
    return {"id": str(story_id), "question": " ".join(row[k] for k in keys), "choices": endings, "answer": answer}


def _mmsu(row, i):
    """VoiceBench `mmsu` rows (MMLU-Pro questions, 4 options): question + option_a..d (or a choices/options list),
    reference/answer letter."""
    if "option_a" in row:
        choices = [row[f"option_{c}"] for c in "abcd" if row.get(f"option_{c}") is not None]
    else:
        choices = list(row.get("choices") or row.get("options"))
    answer = row.get("reference", row.get("answer"))
    answer = int(answer) if isinstance(answer, int) else _letter_index(answer, len(choices))
    return {"id": str(row.get("question_id", row.get("id", i))), "question": row["question"], "choices": choices,
            "answer": answer, "category": row.get("category") or row.get("split")}


# name -> (Hub repo id, config, default split, row converter, fields that identify the schema)
PAPER_SETS = {
    "hellaswag": ("Rowan/hellaswag", None, "validation", _hellaswag, {"ctx", "endings", "label"}),
    "arc-challenge": ("allenai/ai2_arc", "ARC-Challenge", "test", _arc, {"answerKey", "question", "choices"}),
    "openbookqa": ("allenai/openbookqa", "main", "test", _arc, {"answerKey", "question_stem"}),
    "piqa": ("ybisk/piqa", None, "validation", _piqa, {"goal", "sol1", "sol2"}),
    "storycloze": ("LSDSem/story_cloze", "2016", "validation", _storycloze, {"sentence_quiz1"}),
    "mmsu": ("hlt-lab/voicebench", "mmsu", None, _mmsu, {"option_a", "question"}),
}
ALIASES = {"arc_challenge": "arc-challenge", "arc-c": "arc-challenge", "arc": "arc-challenge", "obqa": "openbookqa",
           "story_cloze": "storycloze", "story-cloze": "storycloze"}
MMSU_DOMAINS = ("biology", "business", "chemistry", "economics", "engineering", "health", "history", "law", "other",
                "philosophy", "physics", "psychology")


def _canonical(name: str) -> str | None:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in PAPER_SETS else None


def check_item(item: dict, where: str) -> dict:
    for field in ("id", "question", "choices", "answer"):
        if field not in item or item[field] is None:
            raise ValueError(f"{where}: multiple-choice item is missing {field!r} (has {sorted(item)})")
    if not isinstance(item["choices"], (list, tuple)) or len(item["choices"]) < 2:
        raise ValueError(f"{where}: 'choices' must be a list of at least 2 options, got {item['choices']!r:.80}")
    try:
        answer = int(item["answer"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: 'answer' must be a 0-based int index, got {item['answer']!r}") from err
    if not 0 <= answer < len(item["choices"]):
        raise ValueError(f"{where}: answer {answer} is out of range for {len(item['choices'])} choices")
    item_id = item["id"]
    if not isinstance(item["question"], str) or not item["question"].strip():
        raise ValueError(f"{where} (id {item_id!r}): the question is empty")
    choices = [str(c) for c in item["choices"]]
    repeated = sorted({c for c in choices if choices.count(c) > 1})
    if repeated:
        raise ValueError(f"{where} (id {item_id!r}): duplicate choices {repeated}; the answer would be ambiguous")
    return {**item, "id": str(item_id), "choices": choices, "answer": answer}


def read_jsonl(path) -> list[dict]:
    """The JSON objects of a JSON Lines file (blank lines skipped). ValueError naming the file and line for a line
    that is not a JSON object, and for a file without any."""
    rows = []
    with open(path, encoding="utf-8") as f:
        try:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg}, column {err.colno})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not rows:
        raise ValueError(f"{path} is empty: no JSON lines")
    return rows


def _read_local_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data.get("data") or data.get("examples") or []
    raise ValueError(f"Unsupported benchmark file {path} (use .jsonl, .json, .parquet or .csv)")


def load_bigbench_task(path, task_name: str | None = None) -> list[dict]:
    """Items of a BIG-bench multiple-choice task.json (examples with `target_scores`); answer = the best score."""
    data = json.loads(Path(path).read_text(encoding="utf-8")) if not isinstance(path, dict) else path
    name = task_name or data.get("name") or Path(path).parent.name
    items = []
    for i, example in enumerate(data.get("examples", [])):
        scores = example.get("target_scores")
        if not scores:
            continue
        choices = list(scores)
        best = max(range(len(choices)), key=lambda k: scores[choices[k]])
        items.append({"id": f"{name}-{i}", "question": example["input"], "choices": choices, "answer": best,
                      "task": name})
    if not items:
        raise ValueError(f"BIG-bench task {name!r} has no multiple-choice examples (no 'target_scores')")
    return items


def _load_spoken_folder(folder: Path, split: str | None) -> list[dict]:
    from datasets import Audio

    from spans import decode_audio, load_folder_or_hub

    ds = load_folder_or_hub(str(folder), split or "train")
    for column in ("audio", "context_audio"):
        if column in ds.column_names:
            ds = ds.cast_column(column, Audio(decode=False))
    items = []
    for row in ds:
        item = {k: v for k, v in row.items() if k not in ("metadata",)}
        item.update(json.loads(row.get("metadata") or "{}"))
        item["audio"] = decode_audio(row["audio"])
        item["context_audio"] = decode_audio(row.get("context_audio"))
        items.append(check_item(item, str(folder)))
    return items


def _load_paper_set(name: str, split: str | None, local: str | None) -> list[dict]:
    repo, config, default_split, convert, _ = PAPER_SETS[name]
    if local:
        rows = _read_local_rows(Path(local))
    elif name == "storycloze":
        raise ValueError("StoryCloze needs a manual download (https://cs.rochester.edu/nlp/rocstories/): get the "
                         "2016 validation/test CSV and pass it as 'storycloze:/path/to/file.csv'")
    else:
        import datasets

        if name == "mmsu":
            splits = [split] if split else list(MMSU_DOMAINS)
            rows = []
            for domain in splits:
                rows += [dict(r, split=domain) for r in datasets.load_dataset(repo, config, split=domain)]
        else:
            revision = "refs/convert/parquet" if name == "piqa" else None
            rows = list(datasets.load_dataset(repo, config, split=split or default_split, revision=revision))
    return [check_item(convert(row, i), f"{name} row {i}") for i, row in enumerate(rows)]


def _detect_schema(row: dict) -> str | None:
    for name, (*_, fields) in PAPER_SETS.items():
        if fields <= set(row):
            return name
    if {"InputSentence1", "AnswerRightEnding"} <= set(row):
        return "storycloze"
    return None


def load_mc_items(source, split: str | None = None, *, limit: int | None = None) -> list[dict]:
    """Multiple-choice items from `source` (see the module docstring). Raises ValueError naming the problem."""
    source = str(source)
    name, _, local = source.partition(":")
    paper_set = _canonical(name) if not os.path.exists(source) else None
    if paper_set:
        items = _load_paper_set(paper_set, split, local or None)
    else:
        path = Path(source)
        if path.is_dir() and (path / "task.json").exists():
            items = load_bigbench_task(path / "task.json")
        elif path.is_dir():
            items = _load_spoken_folder(path, split)
        elif path.is_file() and (path.name == "task.json" or path.suffix == ".json" and
                                 "examples" in json.loads(path.read_text(encoding="utf-8"))):
            items = load_bigbench_task(path)
        elif path.is_file():
            rows = _read_local_rows(path)
            if rows and isinstance(rows[0], dict) and "target_scores" in rows[0]:
                items = load_bigbench_task({"name": path.stem, "examples": rows})
            else:
                schema = _detect_schema(rows[0]) if rows and not {"question", "choices", "answer"} <= set(rows[0]) \
                    else None
                convert = PAPER_SETS[schema][3] if schema else (lambda row, i: row)
                items = [check_item(convert(row, i), f"{path} row {i}") for i, row in enumerate(rows)]
        else:
            raise ValueError(f"Unknown benchmark source {source!r}: not a file or folder, and not one of "
                             f"{', '.join(PAPER_SETS)}")
    if not items:
        raise ValueError(f"No multiple-choice items in {source!r}")
    ids = [item["id"] for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Duplicate item ids in {source!r}")
    return items[:limit] if limit else items
