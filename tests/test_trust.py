"""Remote code runs only when allowed: --trust-remote-code, or code byte-identical to the installed package."""

import json
import shutil

import pytest
from conftest import save_tiny_checkpoint
from console_scripts import run_script

from modeling_salad.loading import UntrustedCodeError, folder_code_files, resolve_trust_remote_code

FOREIGN_CODE = '''import os
from pathlib import Path
Path(os.environ["SALAD_TEST_MARKER"]).write_text("foreign code ran")
from transformers import PreTrainedTokenizerFast
class ForeignTokenizer(PreTrainedTokenizerFast):
    pass
'''


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("trust"))[0]


def tampered_copy(checkpoint, tmp_path):
    """The checkpoint with a tokenizer_config.json auto_map entry pointing at a foreign file."""
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    (copy / "foreign.py").write_text(FOREIGN_CODE)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.setdefault("auto_map", {})["AutoTokenizer"] = ["foreign.ForeignTokenizer", "foreign.ForeignTokenizer"]
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    return copy


def test_own_code_is_trusted_by_hash_and_foreign_code_is_refused(checkpoint, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="modeling_salad.loading"):
        assert resolve_trust_remote_code(checkpoint) is True
    assert "byte-identical (sha256)" in caplog.text
    copy = tampered_copy(checkpoint, tmp_path)
    assert "foreign.py" in folder_code_files(copy)
    with pytest.raises(UntrustedCodeError, match="foreign.py.*--trust-remote-code"):
        resolve_trust_remote_code(copy)
    assert resolve_trust_remote_code(copy, trust_remote_code=True) is True
    (copy / "foreign.py").unlink()  # an auto_map target that is absent is refused too
    with pytest.raises(UntrustedCodeError, match="foreign.py"):
        resolve_trust_remote_code(copy)
    edited = tmp_path / "edited"
    shutil.copytree(checkpoint, edited)
    with open(edited / "modeling_salad.py", "a") as f:
        f.write("\n# edited\n")
    with pytest.raises(UntrustedCodeError, match="modeling_salad.py"):
        resolve_trust_remote_code(edited)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert resolve_trust_remote_code(plain) is False


def test_salad_eval_refuses_foreign_code_unless_trusted(checkpoint, tmp_path):
    copy = tampered_copy(checkpoint, tmp_path)
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Is {i} even?", "choices": ["yes", "no"],
                                         "answer": i % 2}) + "\n" for i in range(3)))
    marker = tmp_path / "marker"
    env = {"SALAD_TEST_MARKER": str(marker), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    args = ["--model", copy, "--benchmark", bench, "--modes", "text", "--num-fewshot", "0", "--bootstrap", "10",
            "--output", tmp_path / "out"]
    refused = run_script("salad-eval", *args, env=env)
    assert refused.returncode != 0
    assert "--trust-remote-code" in refused.stderr and "foreign.py" in refused.stderr
    assert not marker.exists() and not (tmp_path / "out" / "results.json").exists()
    allowed = run_script("salad-eval", *args, "--trust-remote-code", env=env)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert marker.read_text() == "foreign code ran"
