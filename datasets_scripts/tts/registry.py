"""Backend names -> classes, one cached instance per backend and process."""

from __future__ import annotations

import functools

from .base import TTSBackend

ALIASES = {"espeak": "espeak-ng", "espeak_ng": "espeak-ng", "piper-onnx": "piper"}


def _classes() -> dict[str, type[TTSBackend]]:
    from .engines import EspeakBackend, FestivalBackend, FliteBackend
    from .kokoro import KokoroBackend
    from .piper import PiperBackend

    return {"piper": PiperBackend, "espeak-ng": EspeakBackend, "flite": FliteBackend, "festival": FestivalBackend,
            "kokoro": KokoroBackend}


def list_backends() -> list[str]:
    return list(_classes())


def canonical_backend_name(name: str) -> str:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in _classes():
        raise ValueError(f"Unknown TTS backend {name!r}; choose one of: {', '.join(_classes())}")
    return key


def cache_revision(name: str) -> str:
    """The backend's `cache_revision` (part of a cached clip's key), read without starting the engine."""
    return _classes()[canonical_backend_name(name)].cache_revision


@functools.lru_cache(maxsize=None)
def _cached(name: str) -> TTSBackend:
    return _classes()[name]()


def get_backend(name: str) -> TTSBackend:
    """The backend instance for `name` (piper, espeak-ng, flite, festival, kokoro). Raises ValueError for an
    unknown name, TTSBackendUnavailableError when its engine/weights are missing (not cached, so installing
    the engine and retrying works)."""
    return _cached(canonical_backend_name(name))


def clear_backend_cache() -> None:
    _cached.cache_clear()
