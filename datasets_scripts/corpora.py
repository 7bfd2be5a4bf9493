"""The packaged text corpora SALAD reads (the one place that finds them), fetched once and verified by SHA-256.

* `bigbench==1.0.0` (sdist, 358 MB, Apache-2.0): every BIG-bench `task.json`. `pip download` cannot fetch it
  (its metadata declares a direct-URL dependency, which pip refuses), so the file is downloaded from the index's
  file URL and checked against its published hash; only the task files are extracted, once per archive. Since
  late 2026 the registries here no longer serve it (the index lists only 0.0.1, the file URL answers 403), so it is
  read only where a copy is cached or given; nothing the demo or the test suite runs needs it.
* `evals==3.0.1.post1` (wheel, 46 MB, MIT): OpenAI evals' jsonl registry (MMLU-style, QuaRTz, LogiQA, ...), read
  with zipfile, never installed.

Overrides: `$SALAD_BIGBENCH_DIR` a folder of task folders (`<task>/task.json`) searched first;
`$SALAD_BIGBENCH_TARBALL` another BIG-bench tarball in the sdist's layout (the tests use
`tests/fixtures/demo/bigbench-mini.tar.gz`); `$SALAD_EVALS_WHEEL` an evals wheel (the smoke demo uses
`tests/fixtures/demo/evals-mini.zip`), or `none` to leave that corpus out. Downloads land in `<cache_root()>/downloads` (`spans.cache_root`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from spans import atomic_writer, cache_root, replace_dir

PYPI_FILES = {
    "bigbench": ("https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
                 "bigbench-1.0.0.tar.gz",
                 "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"),
}
EVALS_REQUIREMENT = "evals==3.0.1.post1"
EVALS_WHEEL_GLOB = "evals-3.0.1.post1-*.whl"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _downloads() -> Path:
    return cache_root() / "downloads"


def fetch_pypi_file(name: str, download: bool = True) -> Path | None:
    """A package file listed in PYPI_FILES, downloaded into the cache once (verified, atomic); with
    `download=False`, the cached file or None."""
    url, sha = PYPI_FILES[name]
    dest = _downloads() / url.rsplit("/", 1)[1]
    if dest.is_file() and _sha256(dest) == sha:
        return dest
    if not download:
        return None
    try:
        with urllib.request.urlopen(url, timeout=120) as response, atomic_writer(dest) as f:
            total = int(response.headers.get("Content-Length", 0)) or None
            digest = hashlib.sha256()
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    digest.update(block)
                    bar.update(len(block))
            if digest.hexdigest() != sha:  # raised inside the writer, so the file is never published
                raise ValueError(f"{url}: SHA-256 mismatch, download refused")
    except (urllib.error.URLError, OSError) as error:
        raise RuntimeError(f"could not download {url} ({error}; PyPI has withdrawn it); put a copy at {dest} or "
                           "set SALAD_BIGBENCH_TARBALL / SALAD_BIGBENCH_DIR") from error
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    return dest


def bigbench_archive(download: bool = True) -> Path | None:
    """`$SALAD_BIGBENCH_TARBALL`, else the `bigbench==1.0.0` sdist (downloaded once unless `download=False`,
    which returns None when it is not cached)."""
    local = os.environ.get("SALAD_BIGBENCH_TARBALL")
    if local:
        if not Path(local).is_file():
            raise FileNotFoundError(f"SALAD_BIGBENCH_TARBALL={local} does not exist")
        return Path(local)
    return fetch_pypi_file("bigbench", download=download)


def unsafe_members(tar: tarfile.TarFile) -> list[str]:
    """Members that could write outside the extraction folder: absolute names, `..` parts, links."""
    bad = []
    for member in tar.getmembers():
        parts = member.name.replace("\\", "/").split("/")
        if member.name.startswith(("/", "\\")) or ".." in parts or member.issym() or member.islnk() or (
                len(member.name) > 1 and member.name[1] == ":"):
            bad.append(member.name)
    return bad


def bigbench_dir(download: bool = True) -> Path:
    """Folder of BIG-bench task folders (`<task>/task.json`, `<task>/<subtask>/task.json`), extracted once per
    archive (a second archive, e.g. the test suite's mini tarball, gets its own folder)."""
    archive = bigbench_archive(download)
    if archive is None:
        raise FileNotFoundError("the BIG-bench sdist is not cached; run with downloads allowed or set "
                                "SALAD_BIGBENCH_TARBALL / SALAD_BIGBENCH_DIR")
    default = archive.name == PYPI_FILES["bigbench"][0].rsplit("/", 1)[1]
    root = cache_root() / ("bigbench" if default else f"bigbench-{archive.name.split('.')[0]}")
    if (root / ".complete").is_file():
        return root
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        bad = unsafe_members(tar)
        if bad:
            raise ValueError(f"{archive} has members with absolute names, '..' parts or links, refused: "
                             f"{', '.join(bad[:20])}" + (f" (+{len(bad) - 20} more)" if len(bad) > 20 else ""))
        for member in tqdm(tar, desc="extract BIG-bench task files"):
            if member.isfile() and member.name.endswith("/task.json") and "/benchmark_tasks/" in member.name:
                rel = Path(member.name.split("/benchmark_tasks/", 1)[1])
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_bytes(tar.extractfile(member).read())
    (staging / ".complete").write_text(f"{archive}\n")
    return replace_dir(staging, root)


def bigbench_task_path(task: str, download: bool = True) -> Path:
    """Path of BIG-bench `task`'s task.json (e.g. `general_knowledge`, `elementary_math_qa/question_only`):
    `$SALAD_BIGBENCH_DIR` first, then the extracted archive."""
    task = task.strip().strip("/")
    if not task or ".." in task.split("/"):
        raise ValueError(f"Bad BIG-bench task name {task!r}.")
    if os.environ.get("SALAD_BIGBENCH_DIR"):
        root = Path(os.environ["SALAD_BIGBENCH_DIR"])
        for candidate in (root / task / "task.json", root / f"{task}.json"):
            if candidate.is_file():
                return candidate
    path = bigbench_dir(download) / task / "task.json"
    if not path.is_file():
        raise FileNotFoundError(f"BIG-bench has no task {task!r} ({path} does not exist)")
    return path


def evals_wheel(download: bool = True) -> Path | None:
    """The OpenAI evals wheel; `$SALAD_EVALS_WHEEL` overrides it (`none`: no evals corpus, None). Without a cached
    copy it is fetched with `pip download` unless `download=False` (then None)."""
    local = os.environ.get("SALAD_EVALS_WHEEL")
    if local:
        return None if local.lower() == "none" else Path(local)
    found = sorted(_downloads().glob(EVALS_WHEEL_GLOB))
    if found or not download:
        return found[0] if found else None
    _downloads().mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(_downloads()),
                    EVALS_REQUIREMENT], check=True)
    return sorted(_downloads().glob(EVALS_WHEEL_GLOB))[0]

