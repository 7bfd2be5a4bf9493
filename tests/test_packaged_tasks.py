"""Packaged multiple-choice tasks: the evals wheel's layouts parse into checked items, generated arithmetic has one
right answer among distinct near misses, and specs dispatch to their source."""

import zipfile
from pathlib import Path

import pytest

from datasets_scripts import packaged_tasks
from datasets_scripts.benchmarks import check_item
from datasets_scripts.packaged_tasks import (arithmetic_items, load_evals_task, load_task, parables, pool_names,
                                             task_file_stem)

MINI_EVALS = Path(__file__).parent / "fixtures" / "demo" / "evals-mini.zip"


@pytest.fixture(autouse=True)
def mini_evals(monkeypatch):
    monkeypatch.setenv("SALAD_EVALS_WHEEL", str(MINI_EVALS))


@pytest.mark.parametrize("name, choices", [("quartz", 2), ("socialiqa", 3), ("mmlu", 4), ("which_is_heavier", 2),
                                           ("born_first", 2), ("food", 2)])
def test_every_evals_layout_parses_into_checked_items(name, choices):
    items = load_evals_task(name)
    assert items and all(len(it["choices"]) == choices for it in items)
    for item in items:
        check_item(item, name)
        assert item["question"] and not item["question"].endswith(("Answer:", "Answer Yes or No", "Y or N."))


def test_quartz_question_and_choices_are_split_at_the_lettered_lines():
    first = load_evals_task("quartz")[0]
    assert first["question"] == "Eric adds more resistors to the series circuit. The resistance"
    assert first["choices"] == ["increases", "decreases"] and first["answer"] == 0


def test_a_stem_line_that_looks_like_a_choice_is_not_taken_for_one():
    parsed = packaged_tasks._lettered("Which are true?\nI. ice is cold\nA. I only\nB. none\nAnswer:", "A")
    assert parsed == ("Which are true?\nI. ice is cold", ["I only", "none"], 0)
    assert packaged_tasks._lettered("Q\nA. x\nC. y", "A") is None  # letters out of order


def test_social_iqa_inline_choices_keep_the_question():
    first = load_evals_task("socialiqa")[0]
    assert first["question"].endswith("What will happen to Others?")
    assert first["choices"] == ["talk to the family", "hate bailey", "thank bailey"] and first["answer"] == 2


def test_yes_no_answers_map_to_the_fixed_choice_order():
    born = load_evals_task("born_first")
    assert born[0]["choices"] == ["Yes", "No"] and born[0]["answer"] == 1  # ideal "N"
    assert born[0]["question"] == "Was Abraham Lincoln born before Franklin Pierce?"


def test_an_unknown_task_a_missing_wheel_or_a_missing_file_is_named(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown evals task 'nope'"):
        load_evals_task("nope")
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(FileNotFoundError, match="quartz/samples.jsonl is not in the evals wheel"):
        load_evals_task("quartz", wheel=empty)
    monkeypatch.setenv("SALAD_EVALS_WHEEL", "none")
    with pytest.raises(FileNotFoundError, match="evals wheel is not available"):
        load_evals_task("quartz")


def test_parables_are_distinct_stories_without_the_question():
    stories = parables()
    assert len(stories) == len(set(stories)) >= 10
    assert all("Which moral" not in s and "A)" not in s for s in stories)


def test_one_digit_arithmetic_covers_every_pair_with_one_right_answer():
    items = arithmetic_items("1_digit_multiplication")
    assert len(items) == 100 and len({it["id"] for it in items}) == 100
    for item in items:
        check_item(item, "arithmetic")
        a, b = (int(w) for w in item["question"].removeprefix("What is ").rstrip("?").split(" times "))
        assert item["choices"][item["answer"]] == str(a * b) and len(item["choices"]) == 7
        assert all(int(c) >= 0 for c in item["choices"])
    assert arithmetic_items("1_digit_multiplication") == items  # deterministic


def test_wider_arithmetic_is_a_seeded_sample_and_subtraction_may_go_negative():
    items = arithmetic_items("2_digit_subtraction", seed=3)
    assert len(items) == 200 and items == arithmetic_items("2_digit_subtraction", seed=3)
    assert items != arithmetic_items("2_digit_subtraction", seed=4)
    with pytest.raises(ValueError, match="unknown arithmetic task"):
        arithmetic_items("1_digit_division")


def test_specs_dispatch_to_their_source(monkeypatch, tmp_path):
    assert load_task("evals:quartz") == load_evals_task("quartz")
    assert load_task("arithmetic:1_digit_addition") == arithmetic_items("1_digit_addition")
    monkeypatch.setenv("SALAD_BIGBENCH_TARBALL", str(Path(__file__).parent / "fixtures/demo/bigbench-mini.tar.gz"))
    monkeypatch.setenv("SALAD_CACHE", str(tmp_path / "cache"))
    assert load_task("bigbench:general_knowledge") == load_task("general_knowledge")


def test_pool_names_cover_the_task_and_the_template_siblings():
    assert pool_names("evals:socialiqa") == ["theory_of_mind/socialiqa"]
    assert pool_names("arithmetic:1_digit_addition") == ["arithmetic", "arithmetic/1_digit_addition"]
    assert pool_names("bigbench:general_knowledge") == ["general_knowledge"]
    assert task_file_stem("arithmetic:1_digit_addition") == "arithmetic_1_digit_addition"


def test_the_pool_reads_only_the_corpora_asked_for():
    from selection.text_pool import PoolConfig, build_text_pool

    mini_bigbench = Path(__file__).parent / "fixtures" / "demo" / "bigbench-mini.tar.gz"
    both = build_text_pool(PoolConfig(bigbench=str(mini_bigbench), evals=str(MINI_EVALS), max_per_domain=3))
    assert {row["domain"].split("/")[0] for row in both} == {"bigbench", "evals"}
    only = build_text_pool(PoolConfig(bigbench=str(mini_bigbench), evals=str(MINI_EVALS), max_per_domain=3,
                                      corpora=("evals",), exclude=("quartz",)))
    assert only and all(row["domain"].startswith("evals/") for row in only)
    assert "evals/quartz" not in {row["domain"] for row in only}
    with pytest.raises(ValueError, match="unknown corpora"):
        build_text_pool(PoolConfig(evals=str(MINI_EVALS), corpora=("wiki",)))


def test_salad_eval_specs_load_packaged_tasks_under_their_own_name():
    from evaluation.benchmark_sources import benchmark_name, load_benchmark

    bench = load_benchmark("evals:socialiqa")
    assert bench.name == "socialiqa" and bench.items == load_evals_task("socialiqa")
    assert benchmark_name("arithmetic:1_digit_addition") == "1_digit_addition"
    assert load_benchmark("arithmetic:1_digit_addition").items == arithmetic_items("1_digit_addition")
