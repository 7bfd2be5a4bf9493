"""salad-eval end to end on a tiny saved SALAD checkpoint (offline): results.json, results.md, plots."""

import json

import pytest
from conftest import make_tiny_salad, save_tiny_checkpoint, sine

from evaluation.cli import main
from evaluation.generate_mode import judge_answer, normalize_answer


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def checkpoint(tmp_path):
    return save_tiny_checkpoint(tmp_path)


def items(n, prefix="q"):
    return [{"id": f"{prefix}{i}", "question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2}
            for i in range(n)]


def test_cli_text_and_speech_writes_results(tmp_path, checkpoint, monkeypatch):
    ckpt, _ = checkpoint
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bench = tmp_path / "parity.jsonl"
    write_jsonl(bench, items(9))
    out = tmp_path / "out"
    out.mkdir()
    (out / "someone_elses.txt").write_text("keep me")
    tts_cache = tmp_path / "tts"
    argv = ["--model", str(ckpt), "--benchmark", str(bench), "--modes", "text,speech", "--tts", "flite:slt",
            "--tts-cache", str(tts_cache), "--num-fewshot", "2", "--fewshot-pool-size", "3", "--limit", "4",
            "--bootstrap", "200", "--output", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    row = results["benchmarks"]["parity"]
    assert row["n"] == 4 and row["chance_acc"] == 50.0
    assert row["gap"] == row["base_text_acc"] - row["speech_acc"]
    assert row["text_acc"] == row["base_text_acc"]  # LLM untouched
    for key in ("base_text_acc", "text_acc", "speech_acc", "gap"):
        assert row[f"{key}_ci"][0] <= row[key] <= row[f"{key}_ci"][1]
    assert results["average"]["gap"] == row["gap"]
    assert "| parity | 4 |" in (out / "results.md").read_text()
    assert (out / "accuracy_by_task.png").stat().st_size > 0
    assert len((out / "predictions" / "parity.jsonl").read_text().splitlines()) == 4
    assert (out / "someone_elses.txt").read_text() == "keep me"
    assert len(list(tts_cache.glob("*.npy"))) == 4
    # Deterministic: a second run (TTS from the cache) gives identical numbers.
    out2 = tmp_path / "out2"
    assert main(argv[:-1] + [str(out2)]) == 0
    assert json.loads((out2 / "results.json").read_text())["benchmarks"] == results["benchmarks"]
    # The score cache: filled by one run, read by the next, the numbers unchanged.
    store = tmp_path / "scores.sqlite"
    for run in ("out3", "out4"):
        assert main(argv[:-1] + [str(tmp_path / run), "--score-cache", str(store)]) == 0
        assert json.loads((tmp_path / run / "results.json").read_text())["benchmarks"] == results["benchmarks"]
    assert store.stat().st_size > 0
    # Gap over checkpoints from several results files.
    assert main(["plot", str(out / "results.json"), str(out2 / "results.json"), "--labels", "a", "b",
                 "--output", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "gap_over_checkpoints.png").stat().st_size > 0


def test_cli_errors_are_clear(tmp_path, checkpoint):
    ckpt, _ = checkpoint
    bench = tmp_path / "b.jsonl"
    write_jsonl(bench, items(6))
    with pytest.raises(SystemExit, match="Unknown or empty modes"):
        main(["--model", str(ckpt), "--benchmark", str(bench), "--modes", "telepathy", "--output", str(tmp_path / "o")])
    config = json.loads((ckpt / "config.json").read_text())
    config["base_text_model"] = str(tmp_path / "missing-llm")
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="missing-llm"):
        main(["--model", str(ckpt), "--benchmark", str(bench), "--modes", "text", "--output", str(tmp_path / "o")])


def test_spoken_items_with_recorded_audio_need_no_tts(tmp_path):
    from evaluation.api import EvalConfig, evaluate_model
    from evaluation.audio import SpokenQuestions

    model, processor = make_tiny_salad()
    spoken_items = [{**item, "audio": {"array": sine(0.5, seed=i), "sampling_rate": 16000},
                     "context_audio": {"array": sine(0.2, seed=9), "sampling_rate": 16000} if i % 2 else None}
                    for i, item in enumerate(items(4))]
    spoken = SpokenQuestions(voices=None)
    assert len(spoken.clip(spoken_items[1])) == int(16000 * (0.2 + 0.3 + 0.5))
    config = EvalConfig(modes="speech,generate", num_fewshot=0, generate_max_new_tokens=3, progress=False)
    result = evaluate_model(model, processor, None, None, spoken_items, config, spoken=spoken)
    row = result["benchmarks"]["benchmark"]
    assert row["n"] == 4 and "speech_acc" in row and "generate_acc" in row and "gap" not in row
    assert all(isinstance(r["generate"]["answer"], str) for r in result["predictions"]["benchmark"])


def test_generate_judge():
    assert normalize_answer("The Answer: FOUR!") == "answer four"
    choices = ["two", "four", "twenty four"]
    assert judge_answer("Horses have four legs.", choices, 1)
    assert not judge_answer("Two or four.", choices, 1)
    assert judge_answer("twenty four", choices, 2)  # "four" is inside the right answer: not a competitor
    assert not judge_answer("fourteen", choices, 1)


def test_training_callback_logs_metrics_every_n_steps_and_keeps_train_mode():
    from collections import defaultdict
    from types import SimpleNamespace

    from evaluation.callback import SpokenEvalCallback

    model, processor = make_tiny_salad()
    model.train()
    trainer = SimpleNamespace(model=model, processing_class=processor, _metrics={"train": defaultdict(list)},
                              log=lambda logs: logged.append(logs))
    logged = []
    spoken_items = [{**item, "audio": {"array": sine(0.4, seed=i), "sampling_rate": 16000}}
                    for i, item in enumerate(items(5))]
    callback = SpokenEvalCallback(trainer, spoken_items, eval_steps=2, base_model=model.language_model,
                                  num_fewshot=1, voices=None)
    control = SimpleNamespace(should_log=False)
    callback.on_step_end(None, SimpleNamespace(global_step=1), control)
    assert not control.should_log and not trainer._metrics["train"]
    callback.on_step_end(None, SimpleNamespace(global_step=2), control)
    assert control.should_log and model.training
    metrics = {k: v[0] for k, v in trainer._metrics["train"].items()}
    assert set(metrics) == {"speech_acc", "text_acc", "base_text_acc", "gap"}
    assert metrics["gap"] == metrics["base_text_acc"] - metrics["speech_acc"]
    callback.on_train_end(None, SimpleNamespace(global_step=2), control)
    assert logged == []  # already evaluated at this step
    callback.on_train_end(None, SimpleNamespace(global_step=3), control)
    assert logged and logged[0]["speech_acc"] == metrics["speech_acc"]  # same weights, same (cached) inputs


def test_cascade_needs_an_explicit_asr_model(tmp_path, checkpoint):
    ckpt, _ = checkpoint
    bench = tmp_path / "b.jsonl"
    write_jsonl(bench, items(4))
    with pytest.raises(SystemExit, match="--asr-model"):
        main(["--model", str(ckpt), "--benchmark", str(bench), "--modes", "cascade", "--output", str(tmp_path / "o")])


def test_results_record_their_settings_and_stale_results_are_renamed(tmp_path, checkpoint, monkeypatch):
    ckpt, _ = checkpoint
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bench = tmp_path / "parity.jsonl"
    write_jsonl(bench, items(6))
    out = tmp_path / "out"
    argv = ["--model", str(ckpt), "--benchmark", str(bench), "--modes", "text", "--num-fewshot", "0",
            "--bootstrap", "20", "--output", str(out)]
    assert main(argv + ["--limit", "4"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert first["settings"]["limit"] == 4 and len(first["settings_sha256"]) == 64
    assert main(argv + ["--limit", "4"]) == 0  # same settings: replaced in place, nothing stale
    assert not (out / "results.stale.json").exists()
    with pytest.raises(SystemExit):  # other settings, and the run fails: the old results must not look current
        main(argv + ["--limit", "3", "--modes", "telepathy"])
    assert not (out / "results.json").exists()
    assert json.loads((out / "results.stale.json").read_text())["settings"]["limit"] == 4
    assert main(argv + ["--limit", "3"]) == 0
    assert json.loads((out / "results.json").read_text())["benchmarks"]["parity"]["n"] == 3
    assert not list(out.glob(".*.tmp"))  # unique temp names, none left behind
