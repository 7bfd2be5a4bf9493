"""datasets_scripts.corpora: the one place that finds packaged BIG-bench / evals files (offline, mini tarball)."""

import json
from pathlib import Path

import pytest

from datasets_scripts import corpora

MINI = Path(__file__).parent / "fixtures" / "demo" / "bigbench-mini.tar.gz"


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    for name in ("SALAD_BIGBENCH_TARBALL", "SALAD_BIGBENCH_DIR", "SALAD_EVALS_WHEEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SALAD_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_tasks_come_from_the_tarball_extracted_once_into_their_own_folder(isolated, monkeypatch):
    monkeypatch.setenv("SALAD_BIGBENCH_TARBALL", str(MINI))
    path = corpora.bigbench_task_path("general_knowledge")
    assert path.parent.parent == isolated / "cache" / "bigbench-bigbench-mini"
    assert json.loads(path.read_text())["examples"]
    stamp = (path.parent.parent / ".complete").stat().st_mtime_ns
    assert corpora.bigbench_task_path("/general_knowledge/") == path  # reused, not re-extracted
    assert (path.parent.parent / ".complete").stat().st_mtime_ns == stamp
    with pytest.raises(FileNotFoundError, match="no task 'no_such_task'"):
        corpora.bigbench_task_path("no_such_task")
    with pytest.raises(ValueError, match="Bad BIG-bench task name"):
        corpora.bigbench_task_path("../etc")


def test_a_task_folder_overrides_the_archive(isolated, monkeypatch):
    folder = isolated / "tasks" / "my_task"
    folder.mkdir(parents=True)
    (folder / "task.json").write_text('{"examples": []}')
    monkeypatch.setenv("SALAD_BIGBENCH_DIR", str(isolated / "tasks"))
    assert corpora.bigbench_task_path("my_task") == folder / "task.json"


def test_nothing_is_downloaded_when_downloads_are_off(isolated, monkeypatch):
    assert corpora.bigbench_archive(download=False) is None
    assert corpora.evals_wheel(download=False) is None
    with pytest.raises(FileNotFoundError, match="not cached"):
        corpora.bigbench_dir(download=False)
    monkeypatch.setenv("SALAD_EVALS_WHEEL", "none")
    assert corpora.evals_wheel() is None
    monkeypatch.setenv("SALAD_BIGBENCH_TARBALL", str(isolated / "missing.tar.gz"))
    with pytest.raises(FileNotFoundError, match="SALAD_BIGBENCH_TARBALL"):
        corpora.bigbench_archive()


@pytest.mark.parametrize("name, kind", [
    ("bigbench/benchmark_tasks/../../../../escaped/task.json", "file"),
    ("/tmp/absolute/benchmark_tasks/x/task.json", "file"),
    ("bigbench/benchmark_tasks/linked/task.json", "symlink"),
])
def test_a_tarball_member_that_escapes_the_cache_is_refused(isolated, monkeypatch, name, kind):
    import io
    import tarfile

    archive = isolated / "crafted.tar.gz"
    payload = json.dumps({"examples": [{"input": "q", "target_scores": {"a": 1}}]}).encode()
    with tarfile.open(archive, "w:gz") as tar:
        good = tarfile.TarInfo("bigbench/benchmark_tasks/ok/task.json")
        good.size = len(payload)
        tar.addfile(good, io.BytesIO(payload))
        member = tarfile.TarInfo(name)
        if kind == "symlink":
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(member)
        else:
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    monkeypatch.setenv("SALAD_BIGBENCH_TARBALL", str(archive))
    with pytest.raises(ValueError, match="refused: " + name.replace(".", r"\.")):
        corpora.bigbench_task_path("ok")
    written = [p for p in isolated.rglob("task.json")]
    assert written == [] and not Path("/tmp/absolute/benchmark_tasks/x/task.json").exists()
