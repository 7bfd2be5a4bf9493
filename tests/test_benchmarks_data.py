"""load_mc_items: local JSONL, BIG-bench task.json, the paper's six sets from local copies in their own schema,
and spoken benchmark folders written by `salad-synth --benchmark`. Never touches the Hub."""

from pathlib import Path

import numpy as np
import pytest

from datasets_scripts.benchmarks import load_mc_items
from datasets_scripts.synth_cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"


def test_project_jsonl_keeps_extra_fields():
    items = load_mc_items(FIXTURES / "mc_items.jsonl")
    assert items[0] == {"id": "q1", "question": "What color is a clear daytime sky?",
                        "choices": ["green", "blue", "red"], "answer": 1, "subject": "weather"}
    assert items[1]["context"] == "On the farm there are many animals."


def test_bigbench_task_json():
    items = load_mc_items(FIXTURES / "bigbench_general_knowledge_task.json")
    assert len(items) == 4
    assert items[0]["question"] == "How many legs do horses have?"
    assert items[0]["choices"][items[0]["answer"]] == "four" and items[0]["id"] == "general_knowledge-0"


@pytest.mark.parametrize("source, expected", [
    ("hellaswag.jsonl", ("7", "A man cracks two eggs into a bowl. he", "whisks them with a fork.")),
    ("arc_challenge.jsonl", ("ARC-fixture-1", "Which of these is a source of light?", "the Sun")),
    ("openbookqa.jsonl", ("obqa-1", "Plants need sunlight to", "make food")),
    ("piqa.jsonl", ("0", "To keep bread fresh longer,", "store it in a sealed bag.")),
    ("storycloze.csv", ("story-1", "Anna wanted a dog. She saved money all year. In June she went to the shelter. "
                                   "She met a friendly puppy.", "She took the puppy home.")),
    ("mmsu.jsonl", ("mmsu-bio-1", "Which organelle makes most of a cell's energy?", "the mitochondrion")),
])
def test_paper_sets_from_local_copies(source, expected):
    item = load_mc_items(FIXTURES / source)[0]  # schema detected from the fields
    assert (item["id"], item["question"], item["choices"][item["answer"]]) == expected
    name = source.split(".")[0].replace("_", "-")
    assert load_mc_items(f"{name}:{FIXTURES / source}")[0] == item  # explicit "set:path" form


def test_arc_numeric_labels():
    item = load_mc_items(FIXTURES / "arc_challenge.jsonl")[1]
    assert item["choices"][item["answer"]] == "eight"


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="StoryCloze needs a manual download"):
        load_mc_items("storycloze")
    with pytest.raises(ValueError, match="Unknown benchmark source"):
        load_mc_items("no-such-benchmark")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "q?", "choices": ["a", "b"], "answer": 5}\n')
    with pytest.raises(ValueError, match="out of range"):
        load_mc_items(bad)
    bad.write_text('{"id": "x", "question": "q?", "answer": 0}\n')
    with pytest.raises(ValueError, match="missing 'choices'"):
        load_mc_items(bad)


def test_spoken_benchmark_round_trip(tmp_path, capsys):
    out = tmp_path / "spoken"
    assert main(["--input", str(FIXTURES / "mc_items.jsonl"), "--benchmark", "--output", str(out),
                 "--tts", "flite:slt", "--quiet"]) == 0
    items = load_mc_items(out)
    assert [i["id"] for i in items] == ["q1", "q2"]
    assert items[0]["choices"] == ["green", "blue", "red"] and items[0]["answer"] == 1
    assert items[0]["subject"] == "weather"  # extra fields survive
    assert items[0]["audio"]["sampling_rate"] == 16000 and items[0]["audio"]["array"].dtype == np.float32
    assert items[0]["context_audio"] is None and items[1]["context_audio"]["array"].size > 1000
    assert "multiple-choice item" in (out / "README.md").read_text()
