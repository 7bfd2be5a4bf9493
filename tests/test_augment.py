"""Training-speech augmentation: per-row noise and reverb drawn like speed/pitch, recorded, in the resume key."""

import json

import numpy as np
import pytest

from datasets_scripts.synth import _pool_args
from datasets_scripts.synth_cli import main
from datasets_scripts.synth_writer import STATE_DIR, SynthConfig, completed_summary, write_span_dataset
from datasets_scripts.tts import VoicePool
from datasets_scripts.tts.augment import add_noise, colored_noise, reverberate

RATE = 16000
AUGMENTED = dict(speed_jitter=0.1, pitch_jitter=2, noise_snr_db=(15, 30), reverb_probability=0.5)


def _speech_like(seconds=2.0, amplitude=0.3):
    """A 200 Hz tone with a 3 Hz syllable envelope and a silent last quarter (a pause the reverb tail fills)."""
    t = np.arange(int(seconds * RATE)) / RATE
    audio = amplitude * np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    audio[int(0.75 * t.size):] = 0
    return audio.astype(np.float32)


def _snr_db(clean, noisy):
    gain = float(np.dot(noisy, clean) / np.dot(clean, clean))  # undo a peak rescale before measuring
    residual = noisy / gain - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(residual.astype(np.float64) ** 2))


def test_draws_are_deterministic_per_row_and_seed_and_differ_across_rows():
    ids = [f"doc-{i}" for i in range(200)]
    draws = [VoicePool("flite", seed=3, validate=False, **AUGMENTED).variation(i) for i in ids]
    assert draws == [VoicePool("flite", seed=3, validate=False, **AUGMENTED).variation(i) for i in ids]
    assert draws != [VoicePool("flite", seed=4, validate=False, **AUGMENTED).variation(i) for i in ids]
    assert len({d.noise_snr_db for d in draws}) > 150 and {d.noise_color for d in draws} == {"white", "pink", "brown"}
    assert all(15 <= d.noise_snr_db <= 30 and 0.9 <= d.speed <= 1.1 and -2 <= d.pitch <= 2 for d in draws)
    rooms = [d for d in draws if d.reverb_rt60_s is not None]
    assert 0.35 < len(rooms) / len(draws) < 0.65
    assert all(0.2 <= d.reverb_rt60_s <= 0.8 and 0 <= d.reverb_drr_db <= 10 for d in rooms)
    clean = VoicePool("flite", validate=False).variation("doc-1")
    assert (clean.noise_snr_db, clean.reverb_rt60_s) == (None, None)
    always = VoicePool("flite", validate=False, reverb_probability=1.0)
    assert all(always.variation(i).reverb_rt60_s is not None for i in ids[:20])


def test_augment_is_reproducible_and_keeps_the_length():
    pool = VoicePool("flite", validate=False, noise_snr_db=(20, 20), reverb_probability=1.0)
    audio = _speech_like()
    out = pool.augment(audio, "doc-1", clip_id="doc-1-000")
    assert out.shape == audio.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.array_equal(out, pool.augment(audio, "doc-1", clip_id="doc-1-000"))
    assert not np.array_equal(out, pool.augment(audio, "doc-1", clip_id="doc-1-001"))  # same room, other noise
    assert np.array_equal(VoicePool("flite", validate=False).augment(audio, "doc-1"), audio)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_is_added_at_the_drawn_snr(color):
    audio = _speech_like()
    for snr in (5.0, 15.0, 30.0):
        noisy = add_noise(audio, snr, color, np.random.default_rng(0))
        assert noisy.shape == audio.shape and abs(_snr_db(audio, noisy) - snr) < 0.2
    loud = add_noise(_speech_like(amplitude=0.98), 0.0, color, np.random.default_rng(0))
    assert np.max(np.abs(loud)) <= 0.99 and abs(_snr_db(_speech_like(amplitude=0.98), loud)) < 0.3


def test_noise_snr_through_the_pool_matches_its_record():
    pool = VoicePool("flite", validate=False, noise_snr_db=(10, 25))
    audio = _speech_like()
    for row in ("a", "b", "c"):
        assert abs(_snr_db(audio, pool.augment(audio, row)) - pool.variation(row).noise_snr_db) < 0.2


def test_noise_colors_have_their_spectra():
    def low_share(noise):  # power below 500 Hz over total
        power = np.abs(np.fft.rfft(noise)) ** 2
        return power[np.fft.rfftfreq(noise.size, 1 / RATE) < 500].sum() / power.sum()

    shares = [low_share(colored_noise(np.random.default_rng(1), 4 * RATE, c)) for c in ("white", "pink", "brown")]
    assert shares[0] < 0.1 < shares[1] < shares[2]
    with pytest.raises(ValueError, match="noise color"):
        colored_noise(np.random.default_rng(0), 100, "purple")


def test_reverb_keeps_length_and_peak_and_fills_the_pause():
    audio = _speech_like()
    wet = reverberate(audio, RATE, 0.6, 0.0, np.random.default_rng(0))
    assert wet.shape == audio.shape and wet.dtype == np.float32
    assert np.max(np.abs(wet)) == pytest.approx(np.max(np.abs(audio)), rel=1e-5)
    pause = slice(int(0.76 * audio.size), int(0.80 * audio.size))
    assert np.mean(wet[pause] ** 2) > 1e-6 > np.mean(audio[pause] ** 2)
    dry_room = reverberate(audio, RATE, 0.2, 20.0, np.random.default_rng(0))
    assert np.mean(dry_room[pause] ** 2) < np.mean(wet[pause] ** 2)
    assert reverberate(np.zeros(0, np.float32), RATE, 0.5, 5.0, np.random.default_rng(0)).size == 0


@pytest.mark.parametrize("options, message", [
    ({"noise_snr_db": (30, 15)}, "noise_snr_db"), ({"noise_snr_db": 20}, "noise_snr_db"),
    ({"noise_snr_db": (0, 200)}, "noise_snr_db"), ({"noise_colors": "white,purple"}, "noise_colors"),
    ({"noise_colors": ()}, "noise_colors"), ({"reverb_probability": 1.5}, "reverb_probability"),
    ({"reverb_probability": -0.1}, "reverb_probability"), ({"reverb_rt60_s": (0, 1)}, "reverb_rt60_s"),
    ({"reverb_rt60_s": ("a", "b")}, "reverb_rt60_s"), ({"reverb_drr_db": (5, 50)}, "reverb_drr_db"),
])
def test_bad_augmentation_values_raise(options, message):
    with pytest.raises(ValueError, match=message):
        VoicePool("flite", validate=False, **options)


def test_settings_leave_out_what_is_off_and_rebuild_the_pool_in_workers():
    assert VoicePool("flite", validate=False).settings() == {"speed": 1.0, "speed_jitter": 0.0, "pitch_jitter": 0.0}
    pool = VoicePool("flite:slt", seed=5, **AUGMENTED)
    args = json.loads(json.dumps(_pool_args(pool)))  # what a spawned worker receives
    copy = VoicePool(args.pop("specs"), validate=False, **args)
    assert copy.settings() == pool.settings() and copy.variation("x") == pool.variation("x")


def test_cli_flags_reach_the_folder_its_card_and_each_row(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n"
                              for i, t in enumerate(["Cats sleep in the sun.", "Bread is made from flour."])))
    out = tmp_path / "out"
    flags = ["--speed-jitter", "0.1", "--pitch-jitter", "1", "--noise-snr-db", "15", "30", "--noise-colors", "pink",
             "--reverb-probability", "1", "--reverb-rt60", "0.3", "0.5", "--reverb-drr-db", "2", "8"]
    assert main(["--input", str(source), "--output", str(out), "--tts", "flite:slt", "--quiet", *flags]) == 0
    settings = json.loads((out / STATE_DIR / "config.json").read_text())
    assert settings["noise_snr_db"] == [15, 30] and settings["noise_colors"] == ["pink"]
    assert (settings["reverb_probability"], settings["reverb_rt60_s"], settings["reverb_drr_db"]) == (1, [0.3, 0.5],
                                                                                                      [2, 8])
    record = json.loads(next((out / STATE_DIR).glob("shard-*/chunk-00000.json")).read_text())
    pool = VoicePool("flite:slt", speed_jitter=0.1, pitch_jitter=1, noise_snr_db=(15, 30), noise_colors="pink",
                     reverb_probability=1, reverb_rt60_s=(0.3, 0.5), reverb_drr_db=(2, 8))
    assert record["variations"] == {r: pool.variation(r).as_dict() for r in ("r0", "r1")}
    card = (out / "README.md").read_text()
    assert "pink noise" in card and "reverberation on 100.0 %" in card
    assert main(["--input", str(source), "--output", str(tmp_path / "o2"), "--noise-snr-db", "30", "15"]) == 2
    assert "noise_snr_db" in capsys.readouterr().err


def test_a_changed_augmentation_never_reuses_old_audio(tmp_path):
    rows = [{"id": "a", "text": "The moon orbits the earth."}]
    config = SynthConfig(progress=False)
    first = VoicePool("flite:slt", noise_snr_db=(15, 30))
    write_span_dataset(rows, tmp_path, first, config)
    assert completed_summary(rows, tmp_path, VoicePool("flite:slt", noise_snr_db=(15, 30)), config) is not None
    for changed in ({"noise_snr_db": (10, 30)}, {"noise_snr_db": (15, 30), "noise_colors": "white"},
                    {"noise_snr_db": (15, 30), "reverb_probability": 0.5}, {}):
        assert completed_summary(rows, tmp_path, VoicePool("flite:slt", **changed), config) is None
    with pytest.raises(ValueError, match="different settings.*noise_snr_db"):
        write_span_dataset(rows, tmp_path, VoicePool("flite:slt", noise_snr_db=(5, 30)), config)


def test_demo_trains_on_augmented_speech_and_evaluates_on_clean(tmp_path):
    from salad_demo.pipeline import DemoPipeline
    from salad_demo.presets import get_preset

    default = get_preset("default")
    assert (default.training_speed_jitter, default.training_pitch_jitter) == (0.1, 2.0)
    assert default.training_noise_snr_db == (20.0, 35.0) and default.training_reverb_probability == 0.3
    smoke = get_preset("smoke")
    assert (smoke.training_speed_jitter, smoke.training_noise_snr_db, smoke.training_reverb_probability) == (0, None, 0)
    pool = DemoPipeline(default, tmp_path / "run").voice_pool()
    assert pool.settings() == VoicePool(default.training_voices, speed_jitter=0.1, pitch_jitter=2.0,
                                        noise_snr_db=(20, 35), reverb_probability=0.3, validate=False).settings()
