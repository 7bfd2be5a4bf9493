"""Run a console script of pyproject's [project.scripts] as a subprocess, the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    """name -> "module:function", read from pyproject.toml so that every new script is covered."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["project"]["scripts"])


def script_command(name: str) -> list[str]:
    """The installed script beside this Python; before a reinstall has created it, the same entry point through
    `python -c` (that still checks what the function returns to `sys.exit`, which is the exit code)."""
    installed = Path(sys.executable).parent / name
    if installed.is_file():
        return [str(installed)]
    module, function = console_scripts()[name].split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


def run_script(name: str, *args, env: dict | None = None, timeout: float = 240, cwd=None):
    """`subprocess.run` of the script with this checkout first on PYTHONPATH; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([*script_command(name), *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or ROOT)
