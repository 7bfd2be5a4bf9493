"""Debian TTS engines run as subprocesses: espeak-ng, flite and festival (GPL/BSD code stays out of process)."""

from __future__ import annotations

import functools
import os
import tempfile

import numpy as np

from .base import TTSBackend, read_wav, require_binary, run_engine


def _timeout_for(text: str) -> float:
    return 30.0 + len(text) / 20.0


class EspeakBackend(TTSBackend):
    """espeak-ng formant voices. Voice = language voice plus optional variant: "en-us", "en-us+f3", "en-gb+Andy".

    Intelligibility is lower than Piper/festival/flite (Whisper garbles some sentences), so treat these as
    hard/noisy extra speakers. MBROLA voices (mb-*) are not supported: Debian main has no mbrola program.
    """

    name = "espeak-ng"
    default_voice = "en-us"
    supports_native_pitch = True
    BASE_RATE_WPM = 175
    BASE_PITCH = 50

    def __init__(self):
        self.binary = require_binary("espeak-ng", "espeak-ng")

    @functools.cached_property
    def _languages(self) -> list[str]:
        out = run_engine([self.binary, "--voices"], timeout=30).stdout.splitlines()[1:]
        names = {line.split()[1] for line in out if len(line.split()) >= 4 and not line.split()[3].startswith("mb/")}
        return sorted(names)

    @functools.cached_property
    def _variants(self) -> list[str]:
        out = run_engine([self.binary, "--voices=variant"], timeout=30).stdout.splitlines()[1:]
        return sorted({line.split()[4].split("/")[-1] for line in out if len(line.split()) >= 5})

    def voices(self) -> list[str]:
        english = [lang for lang in self._languages if lang.startswith("en")]
        return english + [f"{lang}+{variant}" for lang in english for variant in self._variants]

    def resolve_voice(self, voice: str | None) -> str:
        voice = voice or self.default_voice
        language, _, variant = voice.partition("+")
        if language not in self._languages:
            raise ValueError(f"Unknown espeak-ng voice {language!r}; see `espeak-ng --voices` "
                             f"(English: {', '.join(l for l in self._languages if l.startswith('en'))})")
        if variant and variant not in self._variants:
            raise ValueError(f"Unknown espeak-ng variant {variant!r}; see `espeak-ng --voices=variant` "
                             f"(e.g. {', '.join(self._variants[:8])})")
        return voice

    def latin_only(self, voice: str) -> bool:
        return voice.startswith("en")

    def _synthesize_piece(self, text, voice, speed, pitch):
        rate = int(round(self.BASE_RATE_WPM * speed))
        pitch_value = int(np.clip(self.BASE_PITCH + pitch * 4, 0, 99))  # ~4 espeak pitch units per semitone
        with tempfile.TemporaryDirectory(prefix="salad-espeak-") as tmp:
            wav = os.path.join(tmp, "out.wav")
            run_engine([self.binary, "-v", voice, "-s", str(rate), "-p", str(pitch_value), "-w", wav, "--stdin"],
                       stdin=text, timeout=_timeout_for(text))
            return read_wav(wav)


class FliteBackend(TTSBackend):
    """CMU flite built-in voices: kal (8 kHz, poor), kal16, awb (Scottish male), rms (US male), slt (US female)."""

    name = "flite"
    default_voice = "slt"

    def __init__(self):
        self.binary = require_binary("flite", "flite")

    @functools.cached_property
    def _voices(self) -> list[str]:
        out = run_engine([self.binary, "-lv"], timeout=30).stdout
        # awb_time is a limited-domain voice that can only say clock times
        return [v for v in (out.split(":", 1)[1].split() if ":" in out else []) if v != "awb_time"]

    def voices(self) -> list[str]:
        return self._voices

    def _synthesize_piece(self, text, voice, speed, pitch):
        with tempfile.TemporaryDirectory(prefix="salad-flite-") as tmp:
            txt, wav = os.path.join(tmp, "in.txt"), os.path.join(tmp, "out.wav")
            with open(txt, "w", encoding="utf-8") as f:
                f.write(text)
            run_engine([self.binary, "-voice", voice, "--setf", f"duration_stretch={1.0 / speed:.4f}",
                        "-f", txt, "-o", wav], timeout=_timeout_for(text))
            return read_wav(wav)


class FestivalBackend(TTSBackend):
    """Festival voices installed from Debian (festvox-*): kal_diphone (default), ked_diphone, cmu_us_slt_arctic_hts.

    Runs `text2wave -eval "(voice_NAME)"`; any voice folder under the festival voices directories is accepted.
    """

    name = "festival"
    default_voice = "kal_diphone"
    VOICE_DIRS = ("/usr/share/festival/voices", "/usr/local/share/festival/voices")

    def __init__(self):
        self.binary = require_binary("text2wave", "festival")

    def voices(self) -> list[str]:
        found = set()
        for root in self.VOICE_DIRS + tuple(filter(None, [os.environ.get("SALAD_FESTIVAL_VOICES")])):
            if os.path.isdir(root):
                for language in os.listdir(root):
                    lang_dir = os.path.join(root, language)
                    if os.path.isdir(lang_dir):
                        found.update(v for v in os.listdir(lang_dir) if os.path.isdir(os.path.join(lang_dir, v)))
        return sorted(found)

    def latin_only(self, voice: str) -> bool:
        return True

    def _synthesize_piece(self, text, voice, speed, pitch):
        with tempfile.TemporaryDirectory(prefix="salad-festival-") as tmp:
            txt, wav = os.path.join(tmp, "in.txt"), os.path.join(tmp, "out.wav")
            with open(txt, "w", encoding="utf-8") as f:
                f.write(text)
            run_engine([self.binary, "-eval", f"(voice_{voice})",
                        "-eval", f"(Parameter.set 'Duration_Stretch {1.0 / speed:.4f})", "-o", wav, txt],
                       timeout=_timeout_for(text))
            return read_wav(wav)
