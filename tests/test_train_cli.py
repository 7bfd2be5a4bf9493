"""trainers/train.py: YAML (positional or --config) + CLI overrides -> a trained, self-contained folder."""

import json

import pytest

from trainers.train import _normalize_argv, main

pytestmark = pytest.mark.timeout(300)


def test_positional_yaml_is_the_config():
    assert _normalize_argv(["trainers/configs/tiny.yaml", "--max_steps", "3"])[:4] == [
        "--config", "trainers/configs/tiny.yaml", "--max_steps", "3"]
    assert _normalize_argv(["--config", "x.yaml"])[:2] == ["--config", "x.yaml"]


def test_tiny_config_trains_logs_diagnostics_and_saves_a_loadable_model(tmp_path):
    from transformers import AutoModel, AutoProcessor

    out = tmp_path / "run"
    trainer = main(["trainers/configs/tiny.yaml", "--output_dir", str(out), "--max_steps", "2", "--save_steps", "2",
                    "--tiny_documents", "4", "--per_device_train_batch_size", "2", "--diagnostics_steps", "1",
                    "--probe_size", "2", "--disable_tqdm", "true"])
    logs = [h for h in trainer.state.log_history if "kd_loss" in h]
    assert [h["step"] for h in logs] == [1, 2]
    assert all(h["misalignment"] >= 0 and h["forgetting"] >= 0 for h in logs)
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert all("kd_loss" in h for h in state["log_history"] if "loss" in h)
    for folder in (out, out / "checkpoint-2"):
        model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__name__ == "SaladForCausalLM" and processor.audio_token == "<|audio|>"


def test_unknown_model_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model_name_or_path"):
        main(["trainers/configs/tiny.yaml", "--tiny_random", "false", "--output_dir", str(tmp_path)])
