"""THE encoder-state cache: frozen-encoder outputs per clip, so training and evaluation run the encoder once.

A clip's states depend on the clip's samples and on the encoder that made them: the audio tower's weights, the
processor's feature extraction and padding mode (a 30 s window or the real length), the chunk length, and, for
adapters that precompute slot states, the adapter recipe. The key hashes all of these (`encoder_identity`), so a
different encoder, or the same encoder with another padding mode, never reads states it did not make.

The encoder is identified by a sha256 of its weights rather than by config + revision: a revision is unknown for
a local or freshly built tower (and identical for two towers that differ only in their weights), while hashing
runs once per model object (0.3 GB/s on a busy 2-core CPU, then memoized; `benchmarks/RESULTS.md`).

Entries live in memory, on disk as `<key>.npz` (float32 states `[chunks, frames, width]` and a bool mask, cut to
the longest real length), or both.

An adapter whose precompute step uses its own trainable weights (the posterior front end writes its greedy
transcript with its own decoder) gives every checkpoint new states. Its cache also keeps the speech encoder's own
frames (`frames_identity`: the encoder's weights and the feature extraction, not the adapter), so a checkpoint
that trained only the adapter re-runs the precompute step, not the frozen encoder (half the time per clip for
Whisper tiny.en's padded window).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from modeling_salad import SAMPLING_RATE, load_audio

from .audio import clip_digest
from .files import atomic_write_bytes

CACHE_FORMAT = 1
_WEIGHT_DIGESTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass
class EncodedClip:
    """A clip's frozen-encoder states `[chunks, frames, width]` (float32) and mask `[chunks, frames]` (bool)."""

    states: np.ndarray
    mask: np.ndarray

    @classmethod
    def from_encoder(cls, states, mask) -> "EncodedClip":
        """From `model.encode_audio` outputs of one clip's chunks, cut to the longest real length."""
        mask = mask.bool().cpu().numpy()
        length = max(int(mask.sum(-1).max()), 1)
        return cls(states[:, :length].float().cpu().numpy(), mask[:, :length])

    def single_chunk_states(self) -> np.ndarray | None:
        """The real rows `[T, width]` of a one-chunk clip (what the training collator feeds), else None."""
        return self.states[0][self.mask[0]] if self.states.shape[0] == 1 else None

    def model_inputs(self) -> dict:
        """`audio_encoder_states` / `audio_encoder_mask` tensors for the model."""
        import torch

        return {"audio_encoder_states": torch.from_numpy(self.states),
                "audio_encoder_mask": torch.from_numpy(self.mask.astype(np.int64))}


def weights_digest(module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes, bytes), memoized until a tensor is written in place
    (optimizer step, `load_state_dict`) or replaced (`.to(dtype)`, `.to(device)`)."""
    import torch

    tensors = module.state_dict()
    versions = tuple((t.data_ptr(), t.dtype, t._version) for t in tensors.values())  # _version: in-place writes
    cached = _WEIGHT_DIGESTS.get(module)
    if cached is not None and cached[0] == versions:
        return cached[1]
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(dtype=torch.uint8).numpy())
    _WEIGHT_DIGESTS[module] = (versions, digest.hexdigest())
    return digest.hexdigest()


def _feature_parts(model, processor) -> dict:
    config = model.config
    return {
        "format": CACHE_FORMAT,
        "audio_padding": (getattr(config, "audio_padding", None), getattr(processor, "audio_padding", None)),
        "chunk_seconds": getattr(processor, "chunk_seconds", None),
        "feature_extractor": processor.feature_extractor.to_json_string(),
    }


def _digest_parts(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def encoder_identity(model, processor) -> str:
    """Hash of everything besides the clip that determines its encoder states (see the module docstring)."""
    config = model.config
    parts = {
        **_feature_parts(model, processor),
        "weights": weights_digest(model.audio_tower),
        "adapter": (getattr(config, "adapter_type", None), getattr(config, "stack_factor", None),
                    getattr(config, "transcript_prompt_ids", None)),
    }
    if _precompute_uses_own_weights(model):
        parts["projector_weights"] = weights_digest(model.multi_modal_projector)
    return _digest_parts(parts)


def frames_identity(model, processor) -> str:
    """Hash of what the speech encoder's own frames (`model.encode_frames`) depend on: its weights and the
    feature extraction, not the adapter."""
    return _digest_parts({**_feature_parts(model, processor), "frames_of": weights_digest(model.audio_encoder)})


def _precompute_uses_own_weights(model) -> bool:
    return bool(getattr(getattr(model, "multi_modal_projector", None), "precompute_uses_own_weights", False))


class EncoderStatesCache:
    """Frozen-encoder states per (encoder identity, clip samples), in memory and/or in `cache_dir`.

    `identity` binds the cache to one encoder (what `for_model` does), for callers that hold no model, such as the
    training collator; `encode` takes the model and works out the identity itself.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, *, identity: str | None = None,
                 keep_in_memory: bool | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        self.keep_in_memory = self.cache_dir is None if keep_in_memory is None else bool(keep_in_memory)
        self._memory: dict[str, EncodedClip] = {}
        self._frames: EncoderStatesCache | None = None

    @classmethod
    def for_model(cls, model, processor, cache_dir=None, **kwargs) -> "EncoderStatesCache":
        """A cache bound to `model`'s encoder as it is now (its weights are hashed once)."""
        return cls(cache_dir, identity=encoder_identity(model, processor), **kwargs)

    def __len__(self) -> int:
        return len(self._memory)

    def clear(self) -> None:
        """Forget the in-memory entries (files in `cache_dir` stay)."""
        self._memory.clear()

    def key(self, wave: np.ndarray, identity: str | None = None) -> str:
        identity = identity or self.identity
        if identity is None:
            raise ValueError("This cache is not bound to an encoder: build it with EncoderStatesCache.for_model(...) "
                             "or pass the identity.")
        return hashlib.sha256(f"{identity}\x1f{clip_digest(wave)}".encode()).hexdigest()

    def _path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.npz" if self.cache_dir is not None else None

    def contains(self, wave: np.ndarray, identity: str | None = None) -> bool:
        key = self.key(wave, identity)
        return key in self._memory or (self.cache_dir is not None and self._path(key).is_file())

    def load(self, wave: np.ndarray, identity: str | None = None) -> EncodedClip | None:
        key = self.key(wave, identity)
        if key in self._memory:
            return self._memory[key]
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        with np.load(path) as stored:
            clip = EncodedClip(stored["states"], stored["mask"])
        if self.keep_in_memory:
            self._memory[key] = clip
        return clip

    def store(self, wave: np.ndarray, clip: EncodedClip, identity: str | None = None) -> None:
        key = self.key(wave, identity)
        if self.keep_in_memory:
            self._memory[key] = clip
        if self.cache_dir is not None:
            buffer = io.BytesIO()
            np.savez(buffer, states=clip.states.astype(np.float32), mask=clip.mask.astype(bool))
            atomic_write_bytes(self._path(key), buffer.getvalue())

    def encode(self, model, processor, wave: np.ndarray) -> EncodedClip:
        """The clip's states (every chunk): from the cache, else from the encoder (then stored)."""
        identity = encoder_identity(model, processor)
        clip = self.load(wave, identity)
        if clip is None:
            clip = _run_encoder(model, processor, [wave], self._frames_cache())[0]
            self.store(wave, clip, identity)
        return clip

    def encoder_frames(self, model, processor, waves: list) -> list[EncodedClip]:
        """The speech encoder's frames of each clip (`model.encode_frames`), whole (padding included, which a
        decoder that cross-attends the padded window reads): from this cache, the missing ones from the encoder
        in one batch (one clip alone, or several one-chunk clips)."""
        import torch

        identity = frames_identity(model, processor)
        clips = [self.load(wave, identity) for wave in waves]
        missing = [i for i, clip in enumerate(clips) if clip is None]
        if missing:
            with torch.no_grad():
                states, mask = model.encode_frames(*_features(model, processor, [waves[i] for i in missing]))
            states, mask = states.float().cpu().numpy(), mask.bool().cpu().numpy()
            for row, i in enumerate(missing):
                rows = slice(None) if len(missing) == 1 else slice(row, row + 1)
                clips[i] = EncodedClip(states[rows], mask[rows])
                self.store(waves[i], clips[i], identity)
        return clips

    def has_frames(self, model, processor, waves: list) -> bool:
        identity = frames_identity(model, processor)
        return all(self.contains(wave, identity) for wave in waves)

    def _frames_cache(self) -> "EncoderStatesCache":
        """Where encoder frames are kept: a cache of their own on the same folder, in memory only when there is no
        folder (a frame entry is read once per projector; the processed states it feeds are what is reused)."""
        if self._frames is None:
            self._frames = EncoderStatesCache(self.cache_dir, keep_in_memory=self.cache_dir is None)
        return self._frames

    def precompute(self, model, processor, documents: Iterable[dict], batch_size: int = 8) -> int:
        """Encode every one-chunk clip of span `documents` not cached yet; returns clips written (resumable).

        Longer clips are left to the encoder at use time, as the collator feeds one state row block per clip.
        """
        from tqdm.auto import tqdm

        documents = tqdm(documents, desc="encoder states", unit="doc")
        return self.precompute_clips(model, processor, (wave for doc in documents for wave in _span_waves(doc)),
                                     batch_size)

    def precompute_clips(self, model, processor, waves: Iterable[np.ndarray], batch_size: int = 8) -> int:
        """Encode every one-chunk clip of `waves` not cached yet, `batch_size` at a time (an adapter's greedy pass
        runs three times faster per clip in batches of 8); returns clips written. Longer clips are left to
        `encode`."""
        identity = encoder_identity(model, processor)
        written, pending = 0, []
        for wave in waves:
            one_chunk = processor.num_chunks(len(wave)) == 1
            if one_chunk and not self.contains(wave, identity):
                pending.append(wave)
            if len(pending) >= batch_size:
                written += self._store_batch(model, processor, pending, identity)
        return written + (self._store_batch(model, processor, pending, identity) if pending else 0)

    def _store_batch(self, model, processor, waves: list, identity: str) -> int:
        for wave, clip in zip(waves, _run_encoder(model, processor, waves, self._frames_cache())):
            self.store(wave, clip, identity)
        count = len(waves)
        waves.clear()
        return count


def _span_waves(document: dict):
    for span in document["spans"]:
        if span.get("audio") is not None:
            yield load_audio(span["audio"], sampling_rate=SAMPLING_RATE)


def _run_encoder(model, processor, waves: list, frames: "EncoderStatesCache | None" = None) -> list[EncodedClip]:
    """Encode `waves` in one batch: one clip alone (all its chunks), or several one-chunk clips.

    With `frames`, a projector whose precompute step uses its own trainable weights (the posterior front end's
    greedy transcript) runs on the speech encoder's frames kept there: a checkpoint that trained only the
    projector re-runs the precompute step, not the frozen encoder. Any other projector reads frames it finds there
    but writes none (its states are reused as they are)."""
    import torch

    with torch.no_grad():
        if frames is not None and (_precompute_uses_own_weights(model) or frames.has_frames(model, processor, waves)):
            clips = frames.encoder_frames(model, processor, waves)
            states, mask = model.precompute_from_frames(*_stacked(clips, next(model.parameters()).device))
        else:
            states, mask = model.encode_audio(*_features(model, processor, waves))
    if len(waves) == 1:
        return [EncodedClip.from_encoder(states, mask)]
    return [EncodedClip.from_encoder(states[i:i + 1], mask[i:i + 1]) for i in range(len(waves))]


def _features(model, processor, waves: list):
    features = processor.extract_audio_features(waves)
    if len(waves) > 1 and features["input_features"].shape[0] != len(waves):
        raise ValueError("Batched encoding takes one-chunk clips only; encode longer clips one at a time.")
    device = next(model.parameters()).device
    return features["input_features"].to(device), features["input_features_mask"].to(device)


def _stacked(clips: list[EncodedClip], device):
    import torch

    return (torch.cat([torch.from_numpy(c.states) for c in clips]).to(device),
            torch.cat([torch.from_numpy(c.mask) for c in clips]).to(device))
