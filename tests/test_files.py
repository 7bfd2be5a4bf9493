import json

import pytest

from spans.files import atomic_write_json, atomic_write_text, staging_dir


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": 1}


def test_staging_dir_replaces_target_only_on_success(tmp_path):
    target = tmp_path / "checkpoint-1"
    with staging_dir(target) as tmp:
        (tmp / "w").write_text("old")
    with pytest.raises(RuntimeError):
        with staging_dir(target) as tmp:
            (tmp / "w").write_text("half")
            raise RuntimeError("killed")
    assert (target / "w").read_text() == "old"
    with staging_dir(target) as tmp:
        (tmp / "w").write_text("new")
    assert (target / "w").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-1"]
