"""salad-publish with HfApi mocked: the exact files and card that would go to the Hub, retries, no token leak."""

from unittest import mock

import pytest

from datasets_scripts.publish import IGNORE_PATTERNS, files_to_upload, main, publish_folder


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "salad-synth-demo"
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")
    (root / "data" / "train-00000-of-00001-00000.parquet").write_bytes(b"PAR1")
    (root / ".salad-synth" / "shard-00000-of-00001").mkdir(parents=True)
    (root / ".salad-synth" / "config.json").write_text("{}")
    (root / "data" / ".train-00000-of-00001-00001.parquet.tmp-12").write_bytes(b"x")
    return root


def test_upload_sends_the_card_and_parts_only(folder):
    api = mock.MagicMock()
    api.create_repo.return_value = "https://huggingface.co/datasets/org/salad-synth"
    report = publish_folder(folder, "org/salad-synth", private=True, api=api)
    assert report["files"] == ["README.md", "data/train-00000-of-00001-00000.parquet"]
    api.create_repo.assert_called_once_with("org/salad-synth", repo_type="dataset", private=True, exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "org/salad-synth" and kwargs["folder_path"] == str(folder)
    assert kwargs["repo_type"] == "dataset" and kwargs["ignore_patterns"] == IGNORE_PATTERNS
    assert report["url"] == "https://huggingface.co/datasets/org/salad-synth"


def test_ignore_patterns_match_the_listing(folder):
    from huggingface_hub.utils import filter_repo_objects

    everything = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert sorted(filter_repo_objects(everything, ignore_patterns=IGNORE_PATTERNS)) == files_to_upload(folder)


def test_large_folders_use_the_resumable_upload(folder):
    api = mock.MagicMock()
    publish_folder(folder, "org/big", api=api, large=True)
    api.upload_large_folder.assert_called_once()
    api.upload_folder.assert_not_called()


def test_transient_errors_are_retried(folder, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    api = mock.MagicMock()
    api.upload_folder.side_effect = [ConnectionError("reset"), OSError("timeout"), None]
    publish_folder(folder, "org/x", api=api, retries=3)
    assert api.upload_folder.call_count == 3
    api.upload_folder.side_effect = ConnectionError("down")
    with pytest.raises(ConnectionError):
        publish_folder(folder, "org/x", api=api, retries=2)


def test_dry_run_lists_files_and_never_calls_the_hub(folder, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET_TOKEN_VALUE")
    with mock.patch("huggingface_hub.HfApi") as hf_api:
        assert main([str(folder), "org/salad-synth", "--dry-run", "--private"]) == 0
        hf_api.assert_not_called()
    out = capsys.readouterr()
    assert "README.md" in out.out and "data/train-00000-of-00001-00000.parquet" in out.out
    assert ".salad-synth" not in out.out and "(private)" in out.out
    assert "hf_SECRET_TOKEN_VALUE" not in out.out + out.err


def test_bad_inputs(folder, tmp_path):
    with pytest.raises(ValueError, match="owner/name"):
        publish_folder(folder, "no-slash", dry_run=True)
    with pytest.raises(ValueError, match="repo_type"):
        publish_folder(folder, "o/n", repo_type="space", dry_run=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.parquet").write_bytes(b"1")
    with pytest.raises(ValueError, match="no README.md card"):
        publish_folder(tmp_path / "empty", "o/n", dry_run=True)
    assert main([str(tmp_path / "missing"), "o/n"]) == 2


def test_pickles_of_a_training_output_are_refused_unless_included(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    for name in ("README.md", "config.json", "model.safetensors", "modeling_salad.py", "chat_template.jinja",
                 "checkpoint-2/trainer_state.json", "checkpoint-2/optimizer.pt", "checkpoint-2/scheduler.pt",
                 "checkpoint-2/rng_state.pth", "checkpoint-2/training_args.bin", "loss.png"):
        (out / name).write_bytes(b"x")
    with pytest.raises(ValueError, match="refusing to upload 4 file") as error:
        publish_folder(out, "org/run", repo_type="model", dry_run=True)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        assert f"checkpoint-2/{name}" in str(error.value)
    assert main([str(out), "org/run", "--repo-type", "model", "--dry-run"]) == 2
    assert "--include" in capsys.readouterr().err
    report = publish_folder(out, "org/run", repo_type="model", dry_run=True, include=["*.pt", "*.pth", "*.bin"])
    assert len(report["files"]) == 11
    (out / "checkpoint-2" / "optimizer.pt").unlink()
    with pytest.raises(ValueError, match="refusing to upload 1 file.*training_args.bin"):
        publish_folder(out, "org/run", repo_type="model", dry_run=True, include=["rng_state.pth", "*/scheduler.pt"])
