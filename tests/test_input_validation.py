"""Bad user inputs give a clear error naming the problem (file, line, item id) before any work starts."""

import json
import warnings

import numpy as np
import pytest

from datasets_scripts.benchmarks import load_mc_items, read_jsonl
from datasets_scripts.synth_cli import MAX_WORDS_PER_CLIP
from datasets_scripts.synth_cli import main as synth_main
from evaluation.cli import main as eval_main


def _jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("lines, message", [
    ([], r"is empty: no JSON lines"),
    (["", "   "], r"is empty: no JSON lines"),
    (['{"id": "a", "text": "fine"}', '{"id": "b", "text": '], r", line 2: not valid JSON"),
    (['{"id": "a", "text": "fine"}', '["not", "an", "object"]'], r", line 2: expected a JSON object, got list"),
])
def test_empty_or_malformed_jsonl_names_the_file_and_line(tmp_path, capsys, lines, message):
    path = _jsonl(tmp_path / "in.jsonl", lines)
    with pytest.raises(ValueError, match=message):
        read_jsonl(path)
    assert synth_main(["--input", str(path), "--output", str(tmp_path / "o"), "--tts", "flite"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit, match=f"{path}.*" + message.split(":")[0]):
        eval_main(["--model", str(tmp_path / "never-loaded"), "--benchmark", str(path), "--modes", "text",
                   "--output", str(tmp_path / "e")])


def _item(**overrides):
    return json.dumps({"id": "q7", "question": "Is seven prime?", "choices": ["yes", "no"], "answer": 0,
                       **overrides})


@pytest.mark.parametrize("item, message", [
    (_item(question=""), r"id 'q7'.*question is empty"),
    (_item(question="   "), r"id 'q7'.*question is empty"),
    (_item(choices=["yes", "no", "yes"]), r"id 'q7'.*duplicate choices \['yes'\]"),
])
def test_empty_question_and_duplicate_choices_are_refused(tmp_path, item, message):
    path = _jsonl(tmp_path / "items.jsonl", [_item(id="q1"), item])
    with pytest.raises(ValueError, match=message):
        load_mc_items(str(path))


@pytest.mark.parametrize("field", ["learning_rate", "adapter_learning_rate"])
def test_a_negative_learning_rate_is_refused_before_any_model_is_built(tmp_path, monkeypatch, field):
    import trainers.train as train

    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(train, "build_model_and_processor", never)
    with pytest.raises(ValueError, match=f"{field} must be >= 0, got -0.001"):
        train.main(["trainers/configs/tiny.yaml", "--output_dir", str(tmp_path), f"--{field}=-0.001"])


def test_a_text_too_long_for_one_clip_is_refused_with_the_split_named(tmp_path, capsys):
    path = _jsonl(tmp_path / "long.jsonl", [json.dumps({"id": "short", "text": "a few words"}),
                                            json.dumps({"id": "essay", "text": " ".join(["word"] * 5000)})])
    assert synth_main(["--input", str(path), "--output", str(tmp_path / "o"), "--tts", "flite"]) == 2
    err = capsys.readouterr().err
    assert f"more than {MAX_WORDS_PER_CLIP} words" in err and "essay (5000 words)" in err and "--spans" in err
    assert not (tmp_path / "o").exists()


def test_a_string_sampling_rate_is_a_clear_error():
    from trainers.tiny import build_tiny_salad

    _, processor = build_tiny_salad()
    with pytest.raises(ValueError, match="sampling rate"):
        processor(text="hi <|audio|>", audio=[np.zeros(1600, np.float32)], sampling_rate="16000")


def test_a_wav_of_random_bytes_behind_a_valid_header_warns(tmp_path):
    import soundfile as sf

    from modeling_salad.processing_salad import load_audio

    rng = np.random.default_rng(0)
    path = tmp_path / "random.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[44:] = rng.integers(0, 256, len(data) - 44, dtype=np.uint8).tobytes()  # keep the 44-byte RIFF header
    path.write_bytes(bytes(data))
    speech_like = tmp_path / "tone.wav"
    sf.write(speech_like, 0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) + rng.normal(0, 0.01, 16000),
             16000, subtype="PCM_16")
    with pytest.warns(UserWarning, match="looks like white noise"):
        load_audio(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(str(speech_like))
