"""Whisper transcription's token budget: exactly `max_new_tokens` new tokens, and no transformers warning about
`max_new_tokens` and `max_length` on every call (the cascade transcribes once per item)."""

import pytest


@pytest.mark.assets
def test_whisper_budget_is_new_tokens_without_a_warning_per_call(capfd):
    from datasets_scripts.asr_check import WhisperTranscriber
    from datasets_scripts.tts import get_backend
    from salad_demo.assets import prepare_assets

    audio, _ = get_backend("flite").synthesize("What is the capital of France?", "slt")
    short = WhisperTranscriber(prepare_assets()["whisper"], device="cpu", max_new_tokens=4)
    full = WhisperTranscriber(model=short.model, processor=short.processor)
    capfd.readouterr()
    assert short.transcribe([audio]) == ["What is the capital"]  # 4 new tokens
    assert [full.transcribe([audio])[0] for _ in range(2)] == ["What is the capital of France?"] * 2
    err = capfd.readouterr().err
    assert "max_new_tokens" not in err and "max_length" not in err, err
