"""Load SALAD folders without running code the user did not allow (transformers' `trust_remote_code` rule).

A model folder may carry Python files, and `auto_map` entries in its JSON configs make transformers import them.
Such code runs only

* when the user says so (`--trust-remote-code`, i.e. `trust_remote_code=True`), or
* when every code file of the folder (each `*.py` in it, and every module an `auto_map` entry names) is
  byte-identical (sha256) to the remote-code file of the same name in this installed `modeling_salad`: running
  it is then running the installed package. A log line says so.

Otherwise `UntrustedCodeError` names the files and the flag. This module is not remote code: no remote-code file
imports it, so `save_pretrained` never copies it into a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

__all__ = ["UntrustedCodeError", "installed_code_hashes", "folder_code_files", "untrusted_code_files",
           "resolve_trust_remote_code", "load_salad_processor", "load_salad"]

logger = logging.getLogger(__name__)

REMOTE_CODE_ENTRY_FILES = ("configuration_salad.py", "modeling_salad.py", "processing_salad.py")
AUTO_MAP_CONFIGS = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
FLAG = "--trust-remote-code"


class UntrustedCodeError(ValueError):
    """A model folder holds code that is not the installed modeling_salad, and the user did not allow it."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def installed_code_hashes() -> dict[str, str]:
    """File name -> sha256 of every remote-code file `save_pretrained` writes (the entry files and, recursively,
    their relative imports), read from this installed package."""
    from transformers.dynamic_module_utils import get_relative_import_files

    package = Path(__file__).resolve().parent
    files = {package / name for name in REMOTE_CODE_ENTRY_FILES}
    for entry in list(files):
        files.update(Path(f) for f in get_relative_import_files(entry))
    return {f.name: _sha256(f) for f in sorted(files) if f.is_file()}


def _auto_map_targets(value) -> list[str]:
    """Module references of one auto_map value: "module.Class", "repo--module.Class" or a [slow, fast] pair."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, str) and v]


def auto_map_modules(folder: Path) -> list[str]:
    """Every module file the folder's `auto_map` entries point at ("repo--module" when another repository)."""
    modules = set()
    for name in AUTO_MAP_CONFIGS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            auto_map = json.loads(path.read_text(encoding="utf-8")).get("auto_map") or {}
        except (json.JSONDecodeError, AttributeError) as error:
            raise UntrustedCodeError(f"{path} is not a JSON object ({error}); cannot check its auto_map") from None
        for value in auto_map.values():
            for target in _auto_map_targets(value):
                repo, _, reference = target.rpartition("--")
                module = reference.rsplit(".", 1)[0]
                modules.add(f"{repo}--{module}.py" if repo else f"{module}.py")
    return sorted(modules)


def folder_code_files(folder: str | os.PathLike) -> list[str]:
    """Every `*.py` in the folder plus every `auto_map` target (file names). Files in subfolders (e.g. the
    `checkpoint-N/` of a training output) are not importable through a checkpoint whose own files are trusted."""
    folder = Path(folder)
    files = {p.name for p in folder.glob("*.py") if p.is_file()}
    return sorted(files | set(auto_map_modules(folder)))


def untrusted_code_files(folder: str | os.PathLike) -> list[str]:
    """The folder's code files that are missing from, or differ from, the installed remote-code files."""
    folder, trusted = Path(folder), installed_code_hashes()
    bad = []
    for name in folder_code_files(folder):
        path = folder / name
        if name not in trusted or not path.is_file() or _sha256(path) != trusted[name]:
            bad.append(name)
    return bad


def _local_folder(path_or_id: str) -> Path:
    """A local folder as is; a Hub id as its JSON and Python files (no code is run to fetch them)."""
    if Path(path_or_id).is_dir():
        return Path(path_or_id)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_id), allow_patterns=["*.json", "*.py"]))
    except Exception as error:  # offline, unknown id, gated: the code cannot be checked
        raise UntrustedCodeError(
            f"{path_or_id!r} is not a local folder and its code could not be fetched to check it ({error}); "
            f"pass {FLAG} to allow whatever code it holds.") from None


def resolve_trust_remote_code(path_or_id: str | os.PathLike, trust_remote_code: bool | None = None) -> bool:
    """The `trust_remote_code` to pass to transformers for `path_or_id`.

    True when the user allowed remote code, or when the folder's code is the installed modeling_salad (logged);
    False when the folder holds no code; otherwise raises `UntrustedCodeError` naming the flag. `None` and
    `False` both mean "not allowed by the user".
    """
    if trust_remote_code:
        logger.warning("%s: running the folder's own code, as allowed by %s.", path_or_id, FLAG)
        return True
    folder = _local_folder(str(path_or_id))
    code = folder_code_files(folder)
    if not code:
        return False
    bad = untrusted_code_files(folder)
    if bad:
        older = set(bad) <= set(installed_code_hashes())
        raise UntrustedCodeError(
            f"{path_or_id} holds code that is not byte-identical to the installed modeling_salad: {', '.join(bad)}"
            + (" (saved by another version of it? re-save the folder with this one)" if older else "")
            + f". Loading it would run that code; pass {FLAG} (trust_remote_code=True) if you trust it.")
    logger.info("%s: code files %s are byte-identical (sha256) to the installed modeling_salad; loading them.",
                path_or_id, ", ".join(code))
    return True


def load_salad_processor(path_or_id: str | os.PathLike, trust_remote_code: bool | None = None, **kwargs):
    """`SaladProcessor.from_pretrained` under the trust rule above."""
    from .processing_salad import SaladProcessor

    trust = resolve_trust_remote_code(path_or_id, trust_remote_code)
    return SaladProcessor.from_pretrained(str(path_or_id), trust_remote_code=trust, **kwargs)


def load_salad(path_or_id: str | os.PathLike, trust_remote_code: bool | None = None, **model_kwargs):
    """`(SaladForCausalLM, SaladProcessor)` of a SALAD folder, checked by the trust rule before anything loads.

    The model class is the installed one; `model_kwargs` go to its `from_pretrained` (e.g. `dtype`).
    """
    from .modeling_salad import SaladForCausalLM

    processor = load_salad_processor(path_or_id, trust_remote_code)
    return SaladForCausalLM.from_pretrained(str(path_or_id), **model_kwargs), processor
