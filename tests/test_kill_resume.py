"""salad-train killed (SIGKILL) at a random step resumes from its last checkpoint to the same final weights as an
uninterrupted run; checkpoints are staged, so the kill never leaves a half-written checkpoint-N; a resume with
another max_steps is refused. SALAD_KILL_SEED picks another kill point."""

import os
import random
import signal
import subprocess
import time

import pytest
import torch
from console_scripts import ROOT, script_command
from safetensors.torch import load_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # minutes when the machine is oversubscribed

MAX_STEPS = 4
ARGS = ["trainers/configs/tiny.yaml", "--max_steps", str(MAX_STEPS), "--save_steps", "1", "--tiny_documents", "6",
        "--per_device_train_batch_size", "2", "--diagnostics_steps", "0", "--disable_tqdm", "true",
        "--dataloader_num_workers", "0"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _train(out, *extra):
    return subprocess.run([*script_command("salad-train"), *ARGS, "--output_dir", str(out), *extra],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=1200)


def _kill_at_step(out, step: int, delay: float) -> None:
    """Start a run, SIGKILL it `delay` s after checkpoint-`step` appears (possibly in the next save)."""
    process = subprocess.Popen([*script_command("salad-train"), *ARGS, "--output_dir", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    try:
        while not (out / f"checkpoint-{step}").is_dir():
            assert process.poll() is None, "the run ended before the kill point"
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _last_checkpoint(out) -> int:
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(steps)


def test_killed_anywhere_resumes_to_the_uninterrupted_weights(tmp_path):
    """Exact equality: CPU kernels are deterministic, and Trainer restores the data order and RNG states."""
    rng = random.Random(int(os.environ.get("SALAD_KILL_SEED", "0")))
    step, delay = rng.randint(1, MAX_STEPS - 1), rng.uniform(0.0, 0.5)
    reference = _train(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    _kill_at_step(out, step, delay)
    last = _last_checkpoint(out)
    print(f"killed {delay:.2f} s after checkpoint-{step} appeared; last complete checkpoint: {last}")
    assert last >= step
    for checkpoint in out.glob("checkpoint-[0-9]*"):  # every visible checkpoint is complete
        assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "model.safetensors").is_file()
    other_length = _train(out, "--max_steps", str(MAX_STEPS + 3), "--resume_from_checkpoint",
                          str(out / f"checkpoint-{last}"))
    assert other_length.returncode != 0  # the restored scheduler would keep the old schedule
    assert f"max_steps={MAX_STEPS}" in other_length.stderr and f"--max_steps {MAX_STEPS}" in other_length.stderr
    resumed = _train(out, "--resume_from_checkpoint", str(out / f"checkpoint-{last}"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    want = load_file(tmp_path / "reference" / "model.safetensors")
    got = load_file(out / "model.safetensors")
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), f"weights differ after a kill at step {step}+{delay:.2f}s"
    assert not [p for p in out.iterdir() if p.name.endswith(".staging")]



def test_salad_synth_killed_repeatedly_ends_with_every_row_exactly_once(tmp_path):
    """SIGKILL at several random points (some inside a part's write); the same command resumes each time."""
    import json

    import pyarrow.parquet as pq

    rng = random.Random(int(os.environ.get("SALAD_KILL_SEED", "0")))
    rows = [{"id": f"r{i}", "text": f"Sentence number {i} is short."} for i in range(16)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    command = [*script_command("salad-synth"), "--input", str(source), "--output", str(out), "--tts", "flite:slt",
               "--chunk-size", "2", "--quiet"]
    state = out / ".salad-synth" / "shard-00000-of-00001"
    kills, done = 0, False
    for chunk in sorted(rng.sample(range(1, 7), 3)):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                                   cwd=ROOT)
        while not (state / f"chunk-{chunk:05d}.json").exists() and process.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        kills += process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        # on a busy machine a run can finish (write its summary) before the kill lands
        done = (state / "summary.json").exists()
        if done:
            break
    if not done:  # the same command resumes; a finished run would be refused without --overwrite
        finished = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=1200)
        assert finished.returncode == 0, finished.stderr[-2000:]
    ids = [i for part in sorted((out / "data").glob("*.parquet")) for i in pq.read_table(part).column("id").to_pylist()]
    print(f"salad-synth: {kills} kills; {len(ids)} rows; lost {16 - len(set(ids))}; duplicates {len(ids) - len(set(ids))}")
    assert kills >= 1 and sorted(ids) == sorted(r["id"] for r in rows)
