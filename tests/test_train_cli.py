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
    assert main(["trainers/configs/tiny.yaml", "--output_dir", str(out), "--max_steps", "2", "--save_steps", "2",
                 "--tiny_documents", "4", "--per_device_train_batch_size", "2", "--diagnostics_steps", "1",
                 "--probe_size", "2", "--disable_tqdm", "true"]) == 0
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "kd_loss" in h]
    assert [h["step"] for h in logs] == [1, 2]
    assert all(h["misalignment"] >= 0 and h["forgetting"] >= 0 for h in logs)
    assert all("kd_loss" in h for h in state["log_history"] if "loss" in h)
    for folder in (out, out / "checkpoint-2"):
        model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__name__ == "SaladForCausalLM" and processor.audio_token == "<|audio|>"


def test_unknown_model_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model_name_or_path"):
        main(["trainers/configs/tiny.yaml", "--tiny_random", "false", "--output_dir", str(tmp_path)])


def test_natural_speech_rows_become_ordered_span_documents(tmp_path):
    import datasets
    import numpy as np

    from datasets_scripts.span_docs import encode_audio
    from trainers.data import iter_utterance_documents, load_speech_documents, mix_sources, load_replay_documents

    tone = np.sin(np.arange(1600) / 5).astype(np.float32) * 0.3
    rows = [{"book": b, "start": s, "text": f"{b} utterance {s}", "audio": encode_audio(tone)}
            for b in ("b1", "b2") for s in (3, 1, 2)]
    docs = list(iter_utterance_documents(rows, group_column="book", order_column="start", utterances_per_document=2))
    assert [d["id"] for d in docs] == ["b1-0", "b1-1", "b2-0", "b2-1"]
    assert [s["text"] for s in docs[0]["spans"]] == ["b1 utterance 1", "b1 utterance 2"]
    assert docs[0]["spans"][0]["audio"]["bytes"] and not docs[0]["replay"]
    with pytest.raises(ValueError, match="contiguous"):
        list(iter_utterance_documents(rows + rows[:1], group_column="book", order_column="start"))

    path = tmp_path / "speech.parquet"
    ds = datasets.Dataset.from_list(rows).cast_column("audio", datasets.Audio(sampling_rate=16000))
    ds.to_parquet(str(path))
    speech = load_speech_documents(str(path), group_column="book", order_column="start", utterances_per_document=3)
    assert len(speech) == 2 and len(speech[0]["spans"]) == 3
    replay_path = tmp_path / "replay.jsonl"
    replay_path.write_text("\n".join(f'{{"text": "replay {i}"}}' for i in range(40)))
    replay = load_replay_documents(str(replay_path))
    mixed = mix_sources([speech], replay, text_replay_ratio=0.5, seed=0)
    assert any(r["replay"] for r in mixed) and any(not r["replay"] for r in mixed)


def test_a_span_folder_rewritten_in_place_loads_its_new_rows(tmp_path):
    """A Stage II selection rewrites OUT/.../dataset in place; the trainer must not read the previous rows from
    the datasets cache (load_dataset(folder) keys its cache on the path)."""
    import datasets
    import numpy as np

    from datasets_scripts.span_docs import encode_audio
    from trainers.data import load_speech_documents

    tone = np.sin(np.arange(1600) / 5).astype(np.float32) * 0.3
    folder = tmp_path / "dataset"
    for version in ("old", "new"):
        (folder / "data").mkdir(parents=True, exist_ok=True)
        rows = [{"id": f"{version}-{i}-000", "doc_id": f"{version}-{i}", "span_index": 0, "text": f"{version} {i}",
                 "audio": encode_audio(tone)} for i in range(3)]
        datasets.Dataset.from_list(rows).to_parquet(str(folder / "data" / "train-00000-of-00001-00000.parquet"))
        docs = load_speech_documents(str(folder), "train", None, False, "text", "audio", "doc_id", "span_index",
                                     None, None)
        assert {d["spans"][0]["text"].split()[0] for d in docs} == {version}
