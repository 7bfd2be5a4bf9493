"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every temporary name is unique (`tempfile` in the target's folder), so two processes writing into one folder do
not overwrite each other's partial files; the final `os.replace` is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read once (by setting it and restoring it at once: there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_if_created(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a `tempfile` file (0600) or folder (0700) the mode `open` / `mkdir` would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle (uniquely named temporary file in `path`'s folder) that replaces `path` when the block
    ends without an error; on an error the temporary file is removed and `path` is left as it was.

    with atomic_writer(out / "states.npy") as handle:
        np.save(handle, states)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            yield handle
        _as_if_created(handle.name)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a uniquely named temporary file in the same folder."""
    with atomic_writer(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, payload, indent: int | None = 1) -> Path:
    """JSON with sorted keys; values JSON cannot represent (paths, numpy scalars) are written with `str`."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, sort_keys=True, default=str) + "\n")


def replace_dir(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move a finished `staging` folder to `target`, replacing an older `target`.

    The old folder is first renamed aside, so there is no moment at which `target` holds a mix of both.
    """
    staging, target = Path(staging), Path(target)
    aside = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        os.replace(target, aside / target.name)
    os.replace(staging, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target


@contextlib.contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; on success it replaces `target`, on error it is removed.

    with staging_dir(out / "checkpoint-10") as tmp:
        model.save_pretrained(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    _as_if_created(staging, directory=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, target)
