"""TTS backends: every installed engine speaks a sentence; voices, errors and the voice pool are deterministic."""

import os

import numpy as np
import pytest

from datasets_scripts import tts
from datasets_scripts.tts import (TTSBackendUnavailableError, UnspeakableTextError, VoicePool, get_backend,
                                  parse_voice_pool, split_for_synthesis, stable_hash)

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.mark.parametrize("name", ["piper", "espeak-ng", "flite", "festival"])
def test_backend_speaks_a_sentence(name):
    backend = get_backend(name)
    assert backend.default_voice in backend.voices()
    audio, rate = backend.synthesize(SENTENCE)
    assert rate == 16000 and audio.dtype == np.float32 and audio.ndim == 1
    assert 1.0 < len(audio) / rate < 6.0
    assert np.sqrt(np.mean(audio ** 2)) > 0.01 and np.abs(audio).max() <= 1.0


@pytest.mark.parametrize("name", ["piper", "espeak-ng", "flite", "festival"])
def test_the_same_text_gives_the_same_clip(name):
    backend = get_backend(name)
    first, _ = backend.synthesize(SENTENCE)
    assert np.array_equal(backend.synthesize(SENTENCE)[0], first)  # piper's noise is seeded by the utterance
    other, _ = backend.synthesize("The slow red fox walks past the lazy dog.")
    assert other.shape != first.shape or not np.array_equal(other, first)


def test_a_clip_cache_key_names_the_backends_revision():
    from datasets_scripts.tts.registry import cache_revision
    from evaluation.audio import SpokenQuestions

    assert cache_revision("piper-onnx") == "seeded" and cache_revision("flite") == ""
    item = {"id": "q", "question": "What is two plus two?", "choices": ["4", "5"], "answer": 0}
    assert SpokenQuestions("piper").clip_key(item) != SpokenQuestions("flite:slt").clip_key(item)


def test_documented_default_voices_and_voice_lists():
    assert get_backend("piper").default_voice == "en_US-joe-medium"
    assert get_backend("espeak").default_voice == "en-us"  # alias
    assert get_backend("festival").default_voice == "kal_diphone"
    assert {"kal", "kal16", "awb", "rms", "slt"} <= set(get_backend("flite").voices())
    assert "en-us+f3" in get_backend("espeak-ng").voices()


def test_non_default_voices_and_speed():
    flite = get_backend("flite")
    normal, _ = flite.synthesize(SENTENCE, "awb")
    fast, _ = flite.synthesize(SENTENCE, "awb", speed=1.5)
    assert len(fast) < 0.8 * len(normal)
    shifted, _ = flite.synthesize(SENTENCE, "awb", pitch=3)  # sox pitch shift keeps the duration
    assert abs(len(shifted) - len(normal)) < 0.05 * len(normal)
    espeak, _ = get_backend("espeak-ng").synthesize(SENTENCE, "en-gb+f3", pitch=2)
    assert len(espeak) > 16000


def test_unknown_backend_and_voices_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown TTS backend 'nope'"):
        get_backend("nope")
    for name, voice in [("flite", "zzz"), ("festival", "zzz"), ("piper", "zzz"), ("espeak-ng", "xx-nope"),
                        ("espeak-ng", "en-us+notavariant")]:
        with pytest.raises(ValueError, match="Unknown"):
            get_backend(name).synthesize(SENTENCE, voice)
    with pytest.raises(ValueError, match="speed"):
        get_backend("flite").synthesize(SENTENCE, speed=0)


def test_missing_engine_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    tts.clear_backend_cache()
    try:
        for name, program in [("flite", "flite"), ("festival", "text2wave"), ("espeak-ng", "espeak-ng"),
                              ("piper", "espeak-ng")]:
            with pytest.raises(TTSBackendUnavailableError, match=program):
                get_backend(name)
    finally:
        monkeypatch.undo()
        tts.clear_backend_cache()


@pytest.mark.parametrize("text, reason", [("", "empty"), ("   \n", "empty"), ("?!... --", "no_letters"),
                                          ("Привет, как у тебя дела сегодня?", "non_latin_script"),
                                          ("今日はいい天気ですね", "non_latin_script")])
def test_unspeakable_text_has_a_reason(text, reason):
    with pytest.raises(UnspeakableTextError) as info:
        get_backend("flite").synthesize(text)
    assert info.value.reason == reason


def test_numbers_and_russian_with_a_russian_espeak_voice_are_speakable():
    assert len(get_backend("flite").synthesize("42")[0]) > 1000
    audio, _ = get_backend("espeak-ng").synthesize("Привет, как дела?", "ru")  # only English voices are Latin-only
    assert len(audio) > 1000


def test_long_text_is_split_into_sentences_and_concatenated():
    text = " ".join(["The committee met on Tuesday to discuss the budget for next year."] * 182)  # 2,002 words
    pieces = split_for_synthesis(text)
    assert len(pieces) > 1 and all(len(p) <= 300 for p in pieces)
    assert " ".join(pieces) == text
    audio, rate = get_backend("espeak-ng").synthesize(text)
    assert len(audio) / rate > 400  # ~11 minutes of speech, not truncated


def test_voice_pool_is_stable_and_spreads_voices():
    pool_a = VoicePool("flite:slt,flite:awb,festival", seed=0)
    pool_b = VoicePool(["festival", "flite:awb", "flite:slt"][::-1], seed=0)
    ids = [f"doc-{i}" for i in range(60)]
    picks = [pool_a.pick(i) for i in ids]
    assert picks == [pool_b.pick(i) for i in ids]
    assert picks == [VoicePool("flite:slt,flite:awb,festival", seed=0).pick(i) for i in reversed(ids)][::-1]
    assert len(set(picks)) == 3
    assert [VoicePool("flite:slt,flite:awb,festival", seed=1).pick(i) for i in ids] != picks
    jitter = VoicePool("flite", speed_jitter=0.1, pitch_jitter=2)
    variations = [jitter.variation(i) for i in ids]
    assert all(0.9 <= v.speed <= 1.1 and -2 <= v.pitch <= 2 for v in variations)
    assert variations == [VoicePool("flite", speed_jitter=0.1, pitch_jitter=2).variation(i) for i in ids]


def test_stable_hash_is_machine_independent():
    # sha256-based: a fixed value, unlike Python's salted hash()
    assert stable_hash("voice", 0, "doc-1") == int.from_bytes(
        __import__("hashlib").sha256("voice\x1f0\x1fdoc-1".encode()).digest()[:8], "big")


def test_parse_voice_pool_errors():
    assert [str(s) for s in parse_voice_pool("piper,flite:slt,festival")] == ["piper", "flite:slt", "festival"]
    with pytest.raises(ValueError, match="Duplicate"):
        parse_voice_pool("flite,flite")
    with pytest.raises(ValueError, match="Empty TTS voice spec"):
        parse_voice_pool("flite,,festival")
    with pytest.raises(ValueError, match="Unknown flite voice"):
        VoicePool("flite:nobody")


# --- kokoro: the real weights are user-supplied; a fake session stands in for the ONNX file here ---------------

def test_kokoro_without_weights_names_what_is_missing(monkeypatch):
    for var in ("SALAD_KOKORO_MODEL", "SALAD_KOKORO_VOICES", "SALAD_KOKORO_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(TTSBackendUnavailableError, match="SALAD_KOKORO_MODEL.*SALAD_KOKORO_VOICES.*SALAD_KOKORO_CONFIG"):
        tts.kokoro.KokoroBackend()
    with pytest.raises(TTSBackendUnavailableError, match="not found: model file '/nowhere/k.onnx'"):
        tts.kokoro.KokoroBackend("/nowhere/k.onnx", "/nowhere/v.bin", "/nowhere/c.json")


class _FakeKokoroSession:
    """Stands in for kokoro-v1.0.onnx: checks the feed layout and returns 24 kHz audio, 300 samples per token."""

    def __init__(self):
        self.calls = []

    def get_inputs(self):
        return [type("I", (), {"name": n})() for n in ("tokens", "style", "speed")]

    def run(self, _, feeds):
        self.calls.append(feeds)
        tokens = feeds["tokens"]
        assert tokens.dtype == np.int64 and tokens[0, 0] == 0 and tokens[0, -1] == 0
        assert feeds["style"].shape == (1, 256) and feeds["speed"].dtype == np.float32
        t = np.arange(tokens.shape[1] * 300) / 24000
        return [(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]]


def test_kokoro_call_path_with_fake_weights(tmp_path):
    import json

    vocab = {c: i + 1 for i, c in enumerate(sorted(set("abcdefghijklmnopqrstuvwxyzæðŋɐɑɔəɛɜɪɹɾʃʊʌʒˈˌː ")))}
    (tmp_path / "config.json").write_text(json.dumps({"vocab": vocab}))
    styles = np.random.default_rng(0).normal(size=(510, 1, 256)).astype(np.float32)
    np.savez(tmp_path / "voices.npz", af_heart=styles, am_adam=styles * 0.5)
    (tmp_path / "kokoro.onnx").write_bytes(b"fake")
    backend = tts.kokoro.KokoroBackend(str(tmp_path / "kokoro.onnx"), str(tmp_path / "voices.npz"),
                                       str(tmp_path / "config.json"))
    session = _FakeKokoroSession()
    backend.__dict__["session"] = session  # the cached_property slot
    assert backend.default_voice == "af_heart" and backend.voices() == ["af_heart", "am_adam"]
    audio, rate = backend.synthesize("Hello there, general knowledge.", "am_adam", speed=1.2)
    assert rate == 16000 and audio.dtype == np.float32 and len(audio) > 0
    feeds = session.calls[0]
    n_tokens = feeds["tokens"].shape[1] - 2
    np.testing.assert_array_equal(feeds["style"], styles[n_tokens] * 0.5)  # style row = number of tokens
    assert feeds["speed"][0] == pytest.approx(1.2)
    long_ids = backend.tokenize("a " * 400)  # 800 tokens -> split under the 510 limit at spaces
    assert len(long_ids) == 2 and all(len(p) <= 510 for p in long_ids)
