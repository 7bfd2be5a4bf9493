"""Kokoro-82M (the paper's TTS) through onnxruntime; the user supplies the weight files.

Needs three files, given as constructor arguments or environment variables:
  model   ($SALAD_KOKORO_MODEL)   the Kokoro ONNX export (e.g. kokoro-v1.0.onnx)
  voices  ($SALAD_KOKORO_VOICES)  the voice style pack, an .npz/.bin numpy archive {voice: [510, 1, 256]}
  config  ($SALAD_KOKORO_CONFIG)  a JSON file with the phoneme "vocab" (Kokoro-82M's config.json)
Phonemes come from the espeak-ng CLI (`--ipa`, en-us / en-gb by voice prefix) and are mapped with the vocab;
each piece is at most 510 tokens, padded with id 0 at both ends; the style vector is voices[name][n_tokens].
Output is 24 kHz, resampled to 16 kHz.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np

from .base import TTSBackend, TTSBackendUnavailableError, require_binary, run_engine

KOKORO_SAMPLING_RATE = 24000
MAX_TOKENS = 510
DEFAULT_VOICE = "af_heart"
ENV = {"model": "SALAD_KOKORO_MODEL", "voices": "SALAD_KOKORO_VOICES", "config": "SALAD_KOKORO_CONFIG"}


class KokoroBackend(TTSBackend):
    name = "kokoro"

    def __init__(self, model_path: str | None = None, voices_path: str | None = None,
                 config_path: str | None = None):
        paths = {"model": model_path or os.environ.get(ENV["model"]),
                 "voices": voices_path or os.environ.get(ENV["voices"]),
                 "config": config_path or os.environ.get(ENV["config"])}
        missing = [f"{kind} (${ENV[kind]})" for kind, path in paths.items() if not path]
        absent = [f"{kind} file {path!r}" for kind, path in paths.items() if path and not os.path.exists(path)]
        if missing or absent:
            raise TTSBackendUnavailableError(
                "The kokoro backend needs the user-supplied Kokoro weight files; "
                + "; ".join(filter(None, [("not given: " + ", ".join(missing)) if missing else "",
                                          ("not found: " + ", ".join(absent)) if absent else ""]))
                + ". Download kokoro-v1.0.onnx, voices-v1.0.bin and Kokoro-82M's config.json, then set "
                  f"{ENV['model']}, {ENV['voices']} and {ENV['config']}.")
        self.paths = paths
        self.espeak = require_binary("espeak-ng", "espeak-ng")
        with open(paths["config"], encoding="utf-8") as f:
            config = json.load(f)
        if "vocab" not in config:
            raise ValueError(f"Kokoro config {paths['config']!r} has no 'vocab' mapping (use Kokoro-82M's config.json)")
        self.vocab: dict[str, int] = config["vocab"]
        with np.load(paths["voices"]) as archive:
            self.styles = {name: np.asarray(archive[name], np.float32) for name in archive.files}
        if not self.styles:
            raise ValueError(f"Kokoro voices file {paths['voices']!r} holds no voices")
        self.default_voice = DEFAULT_VOICE if DEFAULT_VOICE in self.styles else sorted(self.styles)[0]

    @functools.cached_property
    def session(self):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise TTSBackendUnavailableError("The kokoro backend needs onnxruntime: pip install onnxruntime") from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("SALAD_TTS_THREADS", "1"))
        options.inter_op_num_threads = 1
        return ort.InferenceSession(self.paths["model"], sess_options=options, providers=["CPUExecutionProvider"])

    def voices(self) -> list[str]:
        return sorted(self.styles)

    def phonemize(self, text: str, voice: str) -> str:
        language = "en-gb" if voice.startswith("b") else "en-us"  # Kokoro names: a* American, b* British
        out = run_engine([self.espeak, "-q", "--ipa", "-v", language, "--stdin"], stdin=text,
                         timeout=30 + len(text) / 20).stdout
        return " ".join(line.strip() for line in out.splitlines() if line.strip())

    def tokenize(self, phonemes: str) -> list[list[int]]:
        """Vocab ids split into pieces of at most MAX_TOKENS (at spaces when possible)."""
        ids = [self.vocab[c] for c in phonemes if c in self.vocab]
        space = self.vocab.get(" ")
        pieces = []
        while len(ids) > MAX_TOKENS:
            cut = MAX_TOKENS
            if space is not None and space in ids[:MAX_TOKENS]:
                cut = MAX_TOKENS - ids[:MAX_TOKENS][::-1].index(space)
            pieces.append(ids[:cut])
            ids = ids[cut:]
        return pieces + ([ids] if ids else [])

    def _run(self, tokens: list[int], voice: str, speed: float) -> np.ndarray:
        style = self.styles[voice][len(tokens)]
        feed_tokens = np.array([[0, *tokens, 0]], dtype=np.int64)
        input_names = {i.name for i in self.session.get_inputs()}
        if "input_ids" in input_names:  # newer exports take int32 speed
            feeds = {"input_ids": feed_tokens, "style": style, "speed": np.array([speed], np.int32)}
        else:
            feeds = {"tokens": feed_tokens, "style": style, "speed": np.array([speed], np.float32)}
        return np.asarray(self.session.run(None, feeds)[0], np.float32).reshape(-1)

    def _synthesize_piece(self, text, voice, speed, pitch):
        pieces = self.tokenize(self.phonemize(text, voice))
        if not pieces:
            raise RuntimeError(f"Kokoro vocab covers none of the phonemes of {text[:40]!r}")
        return np.concatenate([self._run(tokens, voice, speed) for tokens in pieces]), KOKORO_SAMPLING_RATE
