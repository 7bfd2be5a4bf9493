"""Where SALAD keeps its local caches (converted models, downloaded corpora, TTS clips, embeddings)."""

import os
from pathlib import Path


def cache_root() -> Path:
    """`$SALAD_CACHE`, else `.cache/` of the source checkout, else `~/.cache/salad`; every cache is a subfolder."""
    if os.environ.get("SALAD_CACHE"):
        return Path(os.environ["SALAD_CACHE"])
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / ".cache"
    return Path.home() / ".cache" / "salad"
