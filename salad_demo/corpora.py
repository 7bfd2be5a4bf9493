"""The demo's text corpora, fetched once from PyPI (they ship as package files) and verified by SHA-256.

* `bigbench==1.0.0` (sdist, 358 MB, Apache-2.0): every BIG-bench `task.json`. `pip download` cannot fetch it
  (its metadata declares a direct-URL dependency, which pip refuses), so the file is downloaded from the index's
  file URL and checked against its published hash; only the task files are extracted.
* `evals==3.0.1.post1` (wheel, 46 MB, MIT): OpenAI evals' jsonl registry (MMLU-style, QuaRTz, LogiQA, ...).

Only `make demo` downloads them. `$SALAD_BIGBENCH_TARBALL` points at another BIG-bench tarball in the sdist's layout
(the test suite's smoke demo uses `tests/fixtures/demo/bigbench-mini.tar.gz`), and `$SALAD_EVALS_WHEEL` at an evals
wheel, or `none` to leave that corpus out: then nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from datasets_scripts.cache import cache_root

PYPI_FILES = {
    "bigbench": ("https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
                 "bigbench-1.0.0.tar.gz",
                 "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"),
}
EVALS_REQUIREMENT = "evals==3.0.1.post1"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_pypi_file(name: str) -> Path:
    """Download a package file listed in PYPI_FILES into the cache once; verified, atomic."""
    url, sha = PYPI_FILES[name]
    dest = cache_root() / "downloads" / url.rsplit("/", 1)[1]
    if dest.is_file() and _sha256(dest) == sha:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=120) as response, open(part, "wb") as f:
        total = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
                bar.update(len(block))
    if _sha256(part) != sha:
        part.unlink()
        raise RuntimeError(f"{url}: SHA-256 mismatch, download refused")
    os.replace(part, dest)
    return dest


def bigbench_archive() -> Path:
    """`$SALAD_BIGBENCH_TARBALL`, else the `bigbench==1.0.0` sdist (downloaded once)."""
    local = os.environ.get("SALAD_BIGBENCH_TARBALL")
    if local:
        if not Path(local).is_file():
            raise FileNotFoundError(f"SALAD_BIGBENCH_TARBALL={local} does not exist")
        return Path(local)
    return fetch_pypi_file("bigbench")


def bigbench_dir() -> Path:
    """Folder of BIG-bench task folders (`<task>/task.json`, `<task>/<subtask>/task.json`), extracted once per
    archive."""
    archive = bigbench_archive()
    default = archive.name == PYPI_FILES["bigbench"][0].rsplit("/", 1)[1]
    root = cache_root() / ("bigbench" if default else f"bigbench-{archive.name.split('.')[0]}")
    if (root / ".complete").is_file():
        return root
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        for member in tqdm(tar, desc="extract BIG-bench task files"):
            if member.isfile() and member.name.endswith("/task.json") and "/benchmark_tasks/" in member.name:
                rel = Path(member.name.split("/benchmark_tasks/", 1)[1])
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_bytes(tar.extractfile(member).read())
    (staging / ".complete").write_text(f"{archive}\n")
    if root.exists():
        shutil.rmtree(root)
    os.replace(staging, root)
    return root


def bigbench_task(task: str) -> Path:
    path = bigbench_dir() / task / "task.json"
    if not path.is_file():
        raise FileNotFoundError(f"BIG-bench task {task!r} not found ({path})")
    return path


def evals_wheel() -> Path | None:
    """The OpenAI evals wheel (read with zipfile, never installed: its dependencies are heavy); `$SALAD_EVALS_WHEEL`
    overrides it (`none`: no evals corpus, None is returned)."""
    import subprocess
    import sys

    local = os.environ.get("SALAD_EVALS_WHEEL")
    if local:
        return None if local.lower() == "none" else Path(local)
    folder = cache_root() / "downloads"
    found = sorted(folder.glob("evals-3.0.1.post1-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder),
                    EVALS_REQUIREMENT], check=True)
    return sorted(folder.glob("evals-3.0.1.post1-*.whl"))[0]


def evals_jsonl(member: str) -> list[str]:
    """Lines of one jsonl file of the evals registry, e.g. `evals/registry/data/quartz/samples.jsonl`."""
    with zipfile.ZipFile(evals_wheel()) as zf:
        return zf.read(member).decode("utf-8").splitlines()
