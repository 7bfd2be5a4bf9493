"""salad-export: a checkpoint becomes a self-contained Hub-ready folder with a rendered model card."""

import json

import pytest
import yaml

from conftest import make_tiny_salad
from salad_demo.export import evaluation_table, export_model, main

RESULTS = {"benchmarks": {"general_knowledge": {"n": 40, "base_text_acc": 45.0, "text_acc": 45.0,
                                                "speech_acc": 30.0, "cascade_acc": 40.0, "gap": 15.0}},
           "average": {"n": 40, "base_text_acc": 45.0, "text_acc": 45.0, "speech_acc": 30.0, "cascade_acc": 40.0,
                       "gap": 15.0}}


@pytest.fixture
def checkpoint(tmp_path):
    model, processor = make_tiny_salad()
    folder = tmp_path / "checkpoint-3"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_export_writes_model_processor_and_card(tmp_path, checkpoint):
    out = export_model(checkpoint, tmp_path / "salad-tiny", repo_id="org/salad-tiny", results=RESULTS,
                       datasets=["org/salad-synth"])
    for name in ("config.json", "model.safetensors", "modeling_salad.py", "processor_config.json", "README.md"):
        assert (out / name).exists(), name
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "any-to-any"
    assert front["base_model"] == ["tiny-llama"] and front["datasets"] == ["org/salad-synth"]
    assert "trust_remote_code=True" in card and "org/salad-tiny" in card
    assert "| general_knowledge | 40 | 45.0 | 45.0 | 30.0 | 40.0 | 15.0 |" in card
    model = __import__("modeling_salad").SaladForCausalLM.from_pretrained(out)
    total = sum(p.numel() for p in model.parameters())
    assert f"| total | {total:,} |" in card


def test_export_refuses_to_overwrite_and_rejects_non_checkpoints(tmp_path, checkpoint):
    out = tmp_path / "exported"
    export_model(checkpoint, out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_model(checkpoint, out)
    export_model(checkpoint, out, overwrite=True)
    with pytest.raises(ValueError, match="not a SALAD checkpoint"):
        export_model(tmp_path / "nothing-here", tmp_path / "x")


def test_cli_reads_results_json(tmp_path, checkpoint):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    main([str(checkpoint), str(tmp_path / "cli-out"), "--results", str(results), "--repo-id", "org/x"])
    assert "30.0" in (tmp_path / "cli-out" / "README.md").read_text()


def test_evaluation_table_is_empty_without_results():
    assert evaluation_table({}) == ""
