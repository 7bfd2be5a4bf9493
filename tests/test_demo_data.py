"""The demo's numeric Stage I documents: which pool texts they take and how they are joined."""

import re

import pytest

from salad_demo.demo_data import numeric_documents
from salad_demo.presets import get_preset


def _pool():
    rows = [{"id": f"a{i}", "domain": "task/a", "text": f"Add {i} and {i + 1} apples together now."} for i in range(12)]
    rows += [{"id": f"b{i}", "domain": "task/b", "text": f"Room {i} has seats for {i * 3} guests tonight."}
             for i in range(12)]
    rows += [{"id": f"c{i}", "domain": "task/c", "text": "A sentence without any written number at all."}
             for i in range(12)]
    return rows


def test_numeric_documents_take_only_texts_with_digits_joined_per_domain():
    docs = numeric_documents(_pool(), 4, words=14, seed=0)
    assert len(docs) == 4
    for doc in docs:
        assert re.search(r"\d", doc["text"]) and "without any written number" not in doc["text"]
        assert doc["source"] in ("task/a", "task/b")
        assert len(doc["text"].split()) >= 14 and doc["text"].count(".") >= 2
    assert {d["source"] for d in docs} == {"task/a", "task/b"}  # round robin: no domain takes them all
    assert len({d["id"] for d in docs}) == 4


def test_numeric_documents_are_deterministic_per_seed():
    assert numeric_documents(_pool(), 4, words=14, seed=3) == numeric_documents(_pool(), 4, words=14, seed=3)
    assert numeric_documents(_pool(), 4, words=14, seed=3) != numeric_documents(_pool(), 4, words=14, seed=4)


def test_one_digit_numeric_documents_skip_texts_with_only_longer_numbers():
    rows = _pool() + [{"id": f"d{i}", "domain": "task/d", "text": f"It cost {i}.5 or {i}0 or {i},000 coins in all."}
                      for i in range(1, 9)]
    assert "task/d" in {d["source"] for d in numeric_documents(rows, 12, words=14)}
    docs = numeric_documents(rows, 8, words=14, one_digit_only=True)
    assert len(docs) == 8 and {d["source"] for d in docs} == {"task/a", "task/b"}
    assert all(re.search(r"(?<![\d.,])\b\d\b(?![.,]\d)", d["text"]) for d in docs)


def test_numeric_documents_refuse_more_than_the_pool_gives():
    with pytest.raises(ValueError, match="only 12 documents with digits, 13 wanted"):
        numeric_documents(_pool(), 13, words=14)


def test_preset_rejects_a_negative_numeric_document_count():
    preset = get_preset("smoke")
    preset.stage1_numeric_documents = -1
    with pytest.raises(ValueError, match="stage1_numeric_documents must be >= 0"):
        preset.__post_init__()


def test_preset_overrides_apply_parse_and_are_checked():
    from salad_demo.presets import parse_overrides

    overrides = parse_overrides(["stage1_numeric_documents=90", 'trainable="adapter"', "seen_voice=flite:rms",
                                 'recipe={"adapter_type": "mlp"}'])
    assert overrides == {"stage1_numeric_documents": 90, "trainable": "adapter", "seen_voice": "flite:rms",
                         "recipe": {"adapter_type": "mlp"}}
    preset = get_preset("smoke", overrides)
    assert preset.stage1_numeric_documents == 90 and preset.recipe == {"adapter_type": "mlp"}
    assert get_preset("smoke").stage1_numeric_documents == 0  # the registry's preset is untouched
    with pytest.raises(ValueError, match="unknown preset fields \\['no_such_field'\\]"):
        get_preset("smoke", {"no_such_field": 1})
    with pytest.raises(ValueError, match="stage1_numeric_documents must be >= 0"):
        get_preset("smoke", {"stage1_numeric_documents": -2})
    with pytest.raises(ValueError, match="--set takes FIELD=VALUE"):
        parse_overrides(["stage1_steps"])


def test_salad_demo_refuses_an_unknown_set_field_before_any_work(tmp_path):
    from console_scripts import run_script

    proc = run_script("salad-demo", "--preset", "smoke", "--set", "no_such_field=1", "--output", tmp_path / "demo")
    assert proc.returncode != 0 and "unknown preset fields ['no_such_field']" in proc.stderr
    assert not (tmp_path / "demo").exists()
