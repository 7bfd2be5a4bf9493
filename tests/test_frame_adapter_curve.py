"""benchmarks/frame_adapter_curve.py without training or models: marks, rows, derived columns, and the callback's
mark / resume bookkeeping (a fake measurement, a one-layer "projector", a fake CPU clock)."""

import importlib.util
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "frame_adapter_curve.py"
_spec = importlib.util.spec_from_file_location("salad_benchmarks_frame_adapter_curve", _PATH)
curve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(curve)


def test_parse_marks_sorted_unique_and_starting_at_zero():
    assert curve.parse_marks("5, 0,2,2,30") == [0.0, 2.0, 5.0, 30.0]
    with pytest.raises(ValueError, match="start at 0"):
        curve.parse_marks("2,5")
    with pytest.raises(ValueError, match="comma-separated"):
        curve.parse_marks("0,two")


def _row(adapter, mark, correct, gap, kl=1.0, kd=1.0):
    return {"adapter": adapter, "mark_min": mark, "clock": "cpu", "train_minutes": 2 * mark, "cpu_minutes": mark,
            "steps": int(10 * mark), "train_kd_loss": None if mark == 0 else 0.5, "heldout_kd": kd,
            "speech_acc": 100.0 * sum(correct) / len(correct), "speech_acc_ci": [0.0, 100.0],
            "base_text_acc": 50.0, "gap": gap, "choice_kl": kl, "speech_correct": correct, "eval_seconds": 1.0}


def test_rows_append_and_derived_columns(tmp_path):
    path = tmp_path / "curve.jsonl"
    assert curve.read_rows(path) == []
    curve.append_row(path, _row("mlp", 0.0, [True, False, False, True], gap=20.0, kl=2.0, kd=1.0))
    curve.append_row(path, _row("mlp", 5.0, [True, True, False, False], gap=15.0, kl=1.0, kd=0.5))
    rows = curve.read_rows(path)
    assert [r["mark_min"] for r in rows] == [0.0, 5.0]
    derived = curve.with_derived(rows, rows[1])
    assert (derived["gained"], derived["lost"]) == (1, 1)
    assert derived["gap_closed"] == 5.0 and derived["gap_closed_fraction"] == 0.25
    assert derived["kl_ratio"] == 0.5 and derived["kd_ratio"] == 0.5
    lines = curve.table(rows).splitlines()
    assert len(lines) == 4 and lines[3].startswith("| mlp | 5 |") and "| 1 / 1 |" in lines[3]


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.multi_modal_projector = torch.nn.Linear(2, 2)


def _callback(tmp_path, calls):
    def measure(model, folder):
        calls.append(folder.name)
        return {k: v for k, v in _row("mlp", 0.0, [True], gap=1.0).items()
                if k in ("heldout_kd", "speech_acc", "speech_acc_ci", "base_text_acc", "gap", "choice_kl",
                         "speech_correct", "eval_seconds")}

    model = _Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    callback = curve.make_callback("mlp", [0.0, 1.0], tmp_path / "curve.jsonl", tmp_path / "state-mlp.pt",
                                   measure, seed=0, clock="cpu")
    return callback, model, optimizer, scheduler


def test_callback_measures_each_mark_once_and_resumes(tmp_path, monkeypatch):
    from transformers import TrainerControl

    cpu = [100.0]
    monkeypatch.setattr(curve.time, "process_time", lambda: cpu[0])
    calls = []
    callback, model, optimizer, scheduler = _callback(tmp_path, calls)
    control = TrainerControl()
    callback.on_train_begin(None, None, control, model=model, optimizer=optimizer, lr_scheduler=scheduler)
    assert calls == ["mlp-0min"]
    cpu[0] += 30.0  # half a CPU-minute: no mark due
    callback.on_step_end(None, None, control)
    assert calls == ["mlp-0min"] and not control.should_training_stop
    cpu[0] += 31.0  # past the 1-minute mark: measured, state saved, training stops at the last mark
    callback.on_step_end(None, None, control)
    assert calls == ["mlp-0min", "mlp-1min"] and control.should_training_stop
    rows = curve.read_rows(tmp_path / "curve.jsonl")
    assert [(r["mark_min"], r["steps"]) for r in rows] == [(0.0, 0), (1.0, 2)]
    assert rows[1]["cpu_minutes"] == pytest.approx(61.0 / 60)

    # a second run in the same folder: mark 0 is not measured again, the clock and steps continue from the state
    calls.clear()
    callback, model, optimizer, scheduler = _callback(tmp_path, calls)
    callback.on_train_begin(None, None, TrainerControl(), model=model, optimizer=optimizer, lr_scheduler=scheduler)
    assert calls == [] and callback.clock["steps"] == 2
