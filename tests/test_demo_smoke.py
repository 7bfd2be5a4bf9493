"""`salad-demo --preset smoke` end to end into a temporary folder: every stage runs on the real packaged parts,
the report and results are written, the exported model and dataset load the way users load them, and a second
run reuses every stage."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.assets

from salad_demo.pipeline import STAGES, main


MINI_EVALS = Path(__file__).parent / "fixtures" / "demo" / "evals-mini.zip"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, request):
    """The smoke demo on the vendored mini evals wheel and no BIG-bench: the test suite downloads no corpus."""
    out = tmp_path_factory.mktemp("demo-smoke") / "run"
    saved = {k: os.environ.get(k) for k in ("SALAD_BIGBENCH_TARBALL", "SALAD_EVALS_WHEEL")}
    # BIG-bench points nowhere: a stage that still reached for it would fail (the registries no longer serve it)
    os.environ.update(SALAD_BIGBENCH_TARBALL=str(out.parent / "no-bigbench.tar.gz"), SALAD_EVALS_WHEEL=str(MINI_EVALS))
    try:
        start = time.perf_counter()
        assert main(["--preset", "smoke", "--output", str(out)]) == 0
        failed_before = request.session.testsfailed
        yield out, time.perf_counter() - start
        if request.session.testsfailed == failed_before:  # gigabytes of checkpoints, kept only to inspect a failure
            shutil.rmtree(out.parent, ignore_errors=True)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_preset_runs_every_stage_and_reports(smoke_run):
    out, _ = smoke_run
    assert sorted(p.stem for p in (out / "stages").glob("*.json")) == sorted(STAGES)
    results = json.loads((out / "results.json").read_text())
    assert {"preset", "recipe", "first_look", "eval_sets", "data", "evaluations", "summary", "training",
            "selection", "export", "stages"} <= set(results)
    assert set(results["evaluations"]) == {"naive reference", "salad-init", "stage I",
                                           "stage II active", "stage II uniform"}
    assert {(r["stage"], r["voice"]) for r in results["summary"]} >= {("salad-init", "seen"), ("stage I", "unseen")}
    for row in results["summary"]:
        assert row["gap"] == pytest.approx(row["base_text_acc"] - row["speech_acc"])
    assert results["first_look"]["adapter_trained"] is False and results["first_look"]["new_tokens"] >= 1
    assert results["training"]["stage I"]["curves"]["kd_loss"], "no kd_loss logged"
    assert {s["stage"] for s in results["stages"]} == set(STAGES) - {"report"}
    report = (out / "REPORT.md").read_text()
    assert "## Results" in report and "UNTRAINED" in report
    assert (out / "plots" / "stages.png").is_file() and (out / "plots" / "training.png").is_file()
    assert (out / "stage1" / "checkpoint-pre-decay" / "config.json").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_exported_model_and_dataset_load_like_a_user_loads_them(smoke_run):
    out, _ = smoke_run
    code = ("import sys; from transformers import AutoModel, AutoProcessor; "
            "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True); "
            "p = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True); "
            "print(type(m).__name__, type(p).__name__)")
    proc = subprocess.run([sys.executable, "-c", code, str(out / "salad-demo")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["SaladForCausalLM", "SaladProcessor"]
    assert "## " in (out / "salad-demo" / "README.md").read_text()

    from datasets import load_dataset

    ds = load_dataset(str(out / "salad-synth-demo"), split="train")
    assert len(ds) > 0 and {"doc_id", "span_index", "text", "audio", "cluster", "misalignment"} <= set(ds.column_names)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_second_run_reuses_every_stage(smoke_run, capsys):
    out, first_seconds = smoke_run
    records = {p.name: p.read_text() for p in (out / "stages").glob("*.json")}
    start = time.perf_counter()
    assert main(["--preset", "smoke", "--output", str(out)]) == 0
    seconds = time.perf_counter() - start
    assert seconds < max(20.0, 0.2 * first_seconds)
    assert {p.name: p.read_text() for p in (out / "stages").glob("*.json")} == records
    assert capsys.readouterr().err.count("reusing") == len(STAGES)


def test_smoke_preset_refuses_the_default_demo_folder():
    with pytest.raises(ValueError, match="default demo folder"):
        main(["--preset", "smoke", "--output", "runs/demo"])


def test_unknown_preset_and_stage_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        main(["--preset", "huge", "--output", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="unknown stages"):
        main(["--preset", "smoke", "--output", str(tmp_path / "y"), "--stages", "assets,nope"])
