"""The stack's import rules, the encoder-state cache's key, and the one home of the audio-token count."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_salad, sine
from spans import EncoderStatesCache, audio_token_count, encoder_identity
from trainers.collator import SpanDocumentCollator

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_ROOMS = ("modeling_salad", "spans", "trainers", "datasets_scripts", "selection", "evaluation", "salad_app")
PROJECT_ROOMS = LIBRARY_ROOMS + ("salad_demo",)


def _imported_rooms(room: str) -> set[str]:
    """Top-level project packages that any .py file under `room` imports (module level or inside functions)."""
    found = set()
    for path in (ROOT / room).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update(name.split(".")[0] for name in names if name.split(".")[0] in PROJECT_ROOMS)
    found.discard(room)
    return found


def _rooms_present() -> list[str]:
    return [room for room in PROJECT_ROOMS if (ROOT / room / "__init__.py").exists()]


def test_modeling_salad_imports_nothing_of_the_project():
    assert _imported_rooms("modeling_salad") == set()


def test_spans_imports_only_modeling_salad():
    assert _imported_rooms("spans") <= {"modeling_salad"}


def test_trainers_import_only_the_floors_below():
    assert _imported_rooms("trainers") <= {"modeling_salad", "spans"}


def test_data_room_and_trainers_do_not_import_each_other():
    assert not _imported_rooms("datasets_scripts") & {"trainers", "selection", "evaluation", "salad_app"}
    assert not _imported_rooms("trainers") & {"datasets_scripts", "selection"}


def test_no_library_room_imports_the_demo():
    offenders = {room: _imported_rooms(room) for room in _rooms_present() if room != "salad_demo"}
    assert {room: rooms for room, rooms in offenders.items() if "salad_demo" in rooms} == {}


def test_no_import_cycle_between_top_level_packages():
    graph = {room: _imported_rooms(room) for room in _rooms_present()}

    def reaches(start, target, seen=()):
        return any(nxt == target or (nxt not in seen and reaches(nxt, target, (*seen, nxt)))
                   for nxt in graph.get(start, ()))

    assert [room for room in graph if reaches(room, room)] == []


def test_library_whisper_defaults_are_explicit_arguments():
    from datasets_scripts.asr_check import WhisperTranscriber, cer_by_group
    from datasets_scripts.synth_cli import build_parser

    with pytest.raises(ValueError, match="model_path"):
        WhisperTranscriber()
    with pytest.raises(ValueError, match="transcriber"):
        cer_by_group([{"g": 0, "text": "x", "audio": {"array": sine(0.1), "sampling_rate": 16000}}], "g")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--input", "x", "--output", "y", "--tts", "flite", "--cer-check"])


# ----------------------------------------------------------------------------------------- encoder-state cache
def test_a_different_encoder_does_not_read_the_first_encoders_states(tmp_path):
    first, processor = make_tiny_salad(audio_padding="none", seed=0)
    second, _ = make_tiny_salad(audio_padding="none", seed=1)
    document = {"id": "d", "spans": [{"text": "heard", "audio": {"array": sine(0.5), "sampling_rate": 16000}}]}
    assert EncoderStatesCache.for_model(first, processor, tmp_path).precompute(first, processor, [document]) == 1

    wave = sine(0.5)
    assert EncoderStatesCache.for_model(first, processor, tmp_path).load(wave) is not None
    assert EncoderStatesCache.for_model(second, processor, tmp_path).load(wave) is None
    states = EncoderStatesCache(tmp_path).encode(second, processor, wave).states
    with torch.no_grad():
        features = processor.extract_audio_features([wave])
        expected, mask = second.encode_audio(features["input_features"], features["input_features_mask"])
    np.testing.assert_allclose(states[0], expected[0][mask[0]].numpy(), atol=1e-6)


def test_changed_weights_change_the_identity():
    model, processor = make_tiny_salad(audio_padding="none")
    before = encoder_identity(model, processor)
    with torch.no_grad():
        next(model.audio_tower.parameters()).add_(1.0)
    assert encoder_identity(model, processor) != before


def test_the_padding_mode_changes_the_key():
    window_model, window_processor = make_tiny_salad(audio_padding="window", seed=0)
    real_model, real_processor = make_tiny_salad(audio_padding="none", seed=0)
    window = EncoderStatesCache.for_model(window_model, window_processor)
    real = EncoderStatesCache.for_model(real_model, real_processor)
    wave = sine(0.4)
    assert window.key(wave) != real.key(wave)
    assert window.key(wave) == EncoderStatesCache.for_model(window_model, window_processor).key(wave)


def test_collator_feeds_cached_states_with_the_raw_placeholder_count(tmp_path):
    model, processor = make_tiny_salad(audio_padding="none")
    cache = EncoderStatesCache.for_model(model, processor, tmp_path)
    document = {"id": "c", "spans": [{"text": "heard", "audio": {"array": sine(0.6), "sampling_rate": 16000}},
                                     {"text": "tail words", "audio": None}]}
    cache.precompute(model, processor, [document])
    cached = SpanDocumentCollator(processor, speech_policy="all", encoder_cache=cache)([document])
    raw = SpanDocumentCollator(processor, speech_policy="all")([document])
    assert "audio_encoder_states" in cached and "input_features" in raw
    assert torch.equal(cached["input_ids"], raw["input_ids"])
    with torch.no_grad():
        a = model(input_ids=cached["input_ids"], audio_encoder_states=cached["audio_encoder_states"],
                  audio_encoder_mask=cached["audio_encoder_mask"]).logits
        b = model(input_ids=raw["input_ids"], input_features=raw["input_features"],
                  input_features_mask=raw["input_features_mask"]).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_collator_refuses_a_cache_without_an_encoder_identity(tmp_path):
    _, processor = make_tiny_salad(audio_padding="none")
    with pytest.raises(ValueError, match="for_model"):
        SpanDocumentCollator(processor, encoder_cache=EncoderStatesCache(tmp_path))


def test_an_encoder_changed_after_caching_gets_fresh_states():
    model, processor = make_tiny_salad(audio_padding="none")
    cache, wave = EncoderStatesCache(), sine(0.3)
    before = cache.encode(model, processor, wave).states
    with torch.no_grad():
        for parameter in model.audio_tower.parameters():
            parameter.mul_(1.5)
    after = cache.encode(model, processor, wave).states
    assert len(cache) == 2 and not np.allclose(before, after)
    model.audio_tower.to(torch.float64)
    assert encoder_identity(model, processor) != EncoderStatesCache.for_model(model.float(), processor).identity


def test_atomic_writes_get_the_mode_a_plain_write_gets(tmp_path):
    from spans import atomic_write_text, staging_dir

    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "plain").mkdir()
    atomic_write_text(tmp_path / "atomic.txt", "x")
    with staging_dir(tmp_path / "staged") as staging:
        (staging / "f").write_text("x")
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777
    assert mode("atomic.txt") == mode("plain.txt") and mode("staged") == mode("plain")


# ------------------------------------------------------------------------------------------- audio-token count
def test_audio_token_count_is_the_processors_count_and_matches_the_features():
    _, processor = make_tiny_salad(audio_padding="window")
    for seconds in (0.3, 1.0, 31.0):
        clip = sine(seconds)
        assert audio_token_count(processor, len(clip)) == processor.num_audio_tokens(len(clip))
        counted = processor.extract_audio_features([clip])["num_audio_tokens"][0]
        assert audio_token_count(processor, len(clip)) == counted
    with pytest.raises(ValueError, match="at least one sample"):
        audio_token_count(processor, 0)


def test_the_token_count_has_one_home_outside_modeling_salad():
    """Library code outside the model room asks `spans.tokens`, never the processor's count methods directly."""
    callers = []
    for room in _rooms_present():
        if room in ("modeling_salad",):
            continue
        for path in (ROOT / room).rglob("*.py"):
            if path == ROOT / "spans" / "tokens.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr.startswith("num_audio_tokens"):
                    callers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert callers == []
