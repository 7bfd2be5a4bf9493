"""TTS backends behind one interface: `get_backend(name).synthesize(text, voice=None) -> (float32 mono, SAMPLING_RATE)`.

Backends: piper (ONNX voices via onnxruntime; default en_US-joe-medium), espeak-ng (default en-us; variants
"en-us+f3"), flite (default slt), festival (default kal_diphone), kokoro (user-supplied weights). A voice spec is
"BACKEND[:VOICE]"; a comma-separated list is a pool from which each row's voice is picked by a stable hash of its id.
"""

from .base import (TARGET_SAMPLING_RATE, TTSBackend, TTSBackendUnavailableError, UnspeakableTextError,
                   check_speakable, split_for_synthesis)
from .pool import VoicePool, VoiceSpec, parse_voice_pool, parse_voice_spec, stable_hash
from .registry import canonical_backend_name, clear_backend_cache, get_backend, list_backends

__all__ = ["TARGET_SAMPLING_RATE", "TTSBackend", "TTSBackendUnavailableError", "UnspeakableTextError",
           "VoicePool", "VoiceSpec", "check_speakable", "clear_backend_cache", "get_backend", "list_backends",
           "parse_voice_pool", "parse_voice_spec", "split_for_synthesis", "stable_hash", "canonical_backend_name"]
