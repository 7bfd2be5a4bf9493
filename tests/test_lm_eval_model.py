"""The lm-eval model `salad` on a local JSON task (tests/fixtures/lm_eval), offline, with a tiny random SALAD:
mode=text equals lm-eval's `hf` model on the SALAD's own LLM; mode=speech equals salad-eval's speech mode on the
same items and voice; generation requests answer the spoken prompt; the spoken-part rule."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import save_tiny_checkpoint

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is an optional extra: pip install 'salad-speech[lm-eval]'")

from evaluation.lm_eval_model import SpokenContext, split_spoken_context  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tests" / "fixtures" / "lm_eval"
VOICE = "flite:slt"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny SALAD folder whose config points at its own LLM saved as a plain causal LM (the `hf` model)."""
    tmp = tmp_path_factory.mktemp("salad-lm-eval")
    ckpt, base = save_tiny_checkpoint(tmp)
    return ckpt, base, tmp


def run_task(model, model_args, task="salad_spoken_parity", num_fewshot=1, **kwargs):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import evaluation.lm_eval_model  # noqa: F401  (registers "salad")

    return simple_evaluate(model=model, model_args=model_args, tasks=[task], num_fewshot=num_fewshot,
                           task_manager=TaskManager(include_path=str(TASKS)), log_samples=True, device="cpu",
                           batch_size=1, **kwargs)


def choice_logprobs(results, task="salad_spoken_parity") -> dict[str, list[float]]:
    return {s["doc"]["id"]: [resp[0] for resp in s["filtered_resps"]] for s in results["samples"][task]}


@pytest.fixture
def at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the task YAML names its JSON files relative to the repository root
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_text_mode_equals_lm_eval_hf_on_the_same_llm(checkpoint, at_repo_root):
    ckpt, base, _ = checkpoint
    hf = run_task("hf", {"pretrained": str(base), "dtype": "float32"})
    salad = run_task("salad", {"pretrained": str(ckpt), "mode": "text", "trust_remote_code": True})
    expected, got = choice_logprobs(hf), choice_logprobs(salad)
    assert sorted(got) == ["p0", "p1", "p2"]
    for doc_id, logprobs in expected.items():
        assert got[doc_id] == pytest.approx(logprobs, abs=1e-4)
    assert salad["results"]["salad_spoken_parity"]["acc,none"] == hf["results"]["salad_spoken_parity"]["acc,none"]


def test_speech_mode_equals_salad_eval_speech_mode(checkpoint, at_repo_root):
    from evaluation.cli import main as salad_eval

    ckpt, _, tmp = checkpoint
    tts_cache = tmp / "tts"
    out = tmp / "salad-eval"
    assert salad_eval(["--model", str(ckpt), "--benchmark", str(TASKS / "parity.jsonl"), "--fewshot-file",
                       str(TASKS / "shots.jsonl"), "--num-fewshot", "1", "--modes", "speech", "--tts", VOICE,
                       "--tts-cache", str(tts_cache), "--bootstrap", "10", "--output", str(out)]) == 0
    records = [json.loads(line) for line in (out / "predictions" / "parity.jsonl").read_text().splitlines()]
    expected = {r["id"]: r["speech"]["logprobs"] for r in records}
    assert all(r["speech"]["num_shots"] == 1 for r in records)
    clips = set(tts_cache.glob("*.npy"))
    salad = run_task("salad", {"pretrained": str(ckpt), "mode": "speech", "tts": VOICE, "tts_cache": str(tts_cache),
                               "trust_remote_code": True})
    assert set(tts_cache.glob("*.npy")) == clips  # the same texts and voice: salad-eval's cached clips are reused
    got = choice_logprobs(salad)
    assert sorted(got) == sorted(expected)
    for doc_id, logprobs in expected.items():
        assert got[doc_id] == pytest.approx(logprobs, abs=1e-4)


def test_generation_requests_answer_the_spoken_prompt(checkpoint, at_repo_root):
    ckpt, _, tmp = checkpoint
    results = run_task("salad", {"pretrained": str(ckpt), "mode": "speech", "tts": VOICE,
                                 "tts_cache": str(tmp / "tts"), "trust_remote_code": True},
                       task="salad_spoken_generate", num_fewshot=0, limit=2)
    samples = results["samples"]["salad_spoken_generate"]
    assert len(samples) == 2 and all(isinstance(s["filtered_resps"][0], str) for s in samples)
    assert "exact_match,none" in results["results"]["salad_spoken_generate"]


def test_rolling_loglikelihood_is_refused_clearly(checkpoint):
    from evaluation.lm_eval_model import SaladLM

    ckpt, _, _ = checkpoint
    model = SaladLM(pretrained=str(ckpt), mode="text", trust_remote_code=True)
    with pytest.raises(NotImplementedError, match="loglikelihood_rolling .* not supported"):
        model.loglikelihood_rolling([])
    with pytest.raises(ValueError, match="mode must be one of"):
        SaladLM(pretrained=str(ckpt), mode="telepathy")


def test_spoken_part_is_the_last_query_between_its_label_and_answer_cue():
    context = "Question: What do bees make?\nAnswer: honey\n\nQuestion: On a farm.\nWhich animal says moo?\nAnswer:"
    parts = split_spoken_context(context)
    assert parts == SpokenContext("Question: What do bees make?\nAnswer: honey\n\nQuestion:",
                                  "On a farm.\nWhich animal says moo?", "\nAnswer:")
    assert parts.prompt("<|audio|>").endswith("\n\nQuestion:<|audio|>\nAnswer:")
    # No label, no answer cue (a hellaswag-style continuation): the whole last query is spoken.
    assert split_spoken_context("A man sits on a roof. He") == SpokenContext("", "A man sits on a roof. He", "")
    # A description before the shots stays written; a multi-word "label" is speech, not a label.
    parts = split_spoken_context("Answer these.\n\nRoof shingle removal: a man\nAnswer:")
    assert parts.before == "Answer these.\n\n" and parts.spoken == "Roof shingle removal: a man"
    with pytest.raises(ValueError, match="Nothing to speak"):
        split_spoken_context("Question: q\nAnswer: a\n\nQuestion:\nAnswer:")


def test_salad_lm_eval_console_script_runs_lm_eval_cli(checkpoint, at_repo_root):
    ckpt, _, tmp = checkpoint
    script = Path(sys.executable).parent / "salad-lm-eval"
    if not script.exists():
        pytest.fail(f"{script} is not installed: reinstall the package (make install) to get its console scripts.")
    out = tmp / "lm-eval-out"
    proc = subprocess.run([str(script), "--model", "salad", "--model_args",
                           f"pretrained={ckpt},mode=text,trust_remote_code=True", "--tasks", "salad_spoken_parity",
                           "--include_path", str(TASKS), "--num_fewshot", "1", "--device", "cpu",
                           "--output_path", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "salad_spoken_parity" in proc.stdout and "acc_norm" in proc.stdout
    assert list(out.rglob("results_*.json"))
