"""`salad-publish FOLDER REPO_ID`: upload a dataset (or model) folder to the Hugging Face Hub.

Creates the repo if needed (`exist_ok`), then uploads with `upload_large_folder` (resumable: an interrupted upload
continues where it stopped) or `upload_folder` for small folders, retrying transient failures. The token comes from
$HF_TOKEN or `huggingface-cli login` and is never printed. `--dry-run` lists what would be uploaded.

Only data that cannot run code is uploaded: safetensors, JSON/JSONL, text (.md, .txt, .yaml, .csv, .jinja),
parquet, PNG plots, and the package's own remote-code files (configuration_salad.py, ...). Anything else (pickles
such as optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin) is refused with a list, unless
`--include PATTERN` (fnmatch on the relative path or the file name) allows it.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from pathlib import Path

# local run state and caches never go to the Hub
IGNORE_PATTERNS = [".*", ".*/**", "**/.*", "**/.*/**", "**/__pycache__/**"]
LARGE_FOLDER_BYTES = 1 << 30
SAFE_SUFFIXES = (".safetensors", ".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv", ".jinja", ".parquet",
                 ".png")


def _package_code_files() -> set[str]:
    from modeling_salad.loading import installed_code_hashes

    return set(installed_code_hashes())


def refused_files(files: list[str], include: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The files that are neither safe data, nor the package's code, nor matched by an `include` pattern."""
    code = _package_code_files()
    refused = []
    for name in files:
        base = name.rsplit("/", 1)[-1]
        if base.lower().endswith(SAFE_SUFFIXES) or base in code:
            continue
        if any(fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(base, pattern) for pattern in include):
            continue
        refused.append(name)
    return refused


def files_to_upload(folder) -> list[str]:
    """Files that go to the Hub: everything except hidden paths (.salad-synth/, .cache/, tmp files) and caches."""
    folder = Path(folder)
    return [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file() and not any(
        part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts)]


def publish_folder(folder, repo_id: str, repo_type: str = "dataset", private: bool = False,
                   dry_run: bool = False, retries: int = 3, api=None, large: bool | None = None,
                   commit_message: str | None = None, include: list[str] | tuple[str, ...] = ()) -> dict:
    """Upload `folder` to `repo_id`. Returns {"repo_id", "repo_type", "files", "bytes", "url" (None on dry run)}.

    Raises ValueError for a bad folder/repo id/repo type (a dataset folder must have a README.md card) and for
    files outside the safe kinds not matched by `include` (also on a dry run).
    """
    folder = Path(folder)
    if repo_type not in ("dataset", "model"):
        raise ValueError(f"repo_type must be 'dataset' or 'model', got {repo_type!r}")
    if not folder.is_dir():
        raise ValueError(f"Folder to publish not found: {folder}")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'owner/name', got {repo_id!r}")
    files = files_to_upload(folder)
    if not files:
        raise ValueError(f"Nothing to upload in {folder}")
    if "README.md" not in files:
        raise ValueError(f"{folder} has no README.md card; render one first (salad-synth writes it)")
    refused = refused_files(files, include)
    if refused:
        raise ValueError(f"refusing to upload {len(refused)} file(s) that are not safetensors, JSON, text, parquet, "
                         f"PNG or the package's code (they may hold pickled code): {', '.join(refused)}. Remove "
                         "them, or pass --include PATTERN for each kind you mean to publish.")
    size = sum((folder / f).stat().st_size for f in files)
    report = {"repo_id": repo_id, "repo_type": repo_type, "files": files, "bytes": size, "url": None}
    if dry_run:
        return report
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    large = size > LARGE_FOLDER_BYTES if large is None else large
    for attempt in range(1, retries + 1):
        try:
            url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            if large:
                api.upload_large_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                        private=private, ignore_patterns=IGNORE_PATTERNS)
            else:
                api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                  ignore_patterns=IGNORE_PATTERNS,
                                  commit_message=commit_message or f"Upload {folder.name} with salad-publish")
            report["url"] = str(url)
            return report
        except (OSError, ConnectionError, TimeoutError) as err:  # requests/httpx errors subclass OSError
            if attempt == retries or _is_auth_error(err):
                raise
            wait = 2 ** attempt
            print(f"salad-publish: upload failed ({type(err).__name__}); retrying in {wait} s", file=sys.stderr)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _is_auth_error(err) -> bool:
    status = getattr(getattr(err, "response", None), "status_code", None)
    return status in (401, 403, 404)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="salad-publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder written by salad-synth (or a model export)")
    parser.add_argument("repo_id", help="owner/name on the Hub")
    parser.add_argument("--repo-type", choices=("dataset", "model"), default="dataset")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded and stop")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--include", action="append", default=[], metavar="PATTERN",
                        help="also upload files matching this fnmatch pattern (repeatable), e.g. 'tokenizer.model'")
    args = parser.parse_args(argv)
    try:
        report = publish_folder(args.folder, args.repo_id, repo_type=args.repo_type, private=args.private,
                                dry_run=args.dry_run, retries=args.retries, include=args.include)
    except ValueError as err:
        print(f"salad-publish: error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"Would upload {len(report['files'])} files ({report['bytes'] / 1e6:.1f} MB) to "
              f"{report['repo_type']} {report['repo_id']}{' (private)' if args.private else ''}:")
        for name in report["files"]:
            print(f"  {name}")
    else:
        print(f"Uploaded {len(report['files'])} files to {report['url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
