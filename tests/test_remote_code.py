"""save_pretrained -> Auto* with trust_remote_code=True, in a subprocess where `modeling_salad` cannot be imported."""

import json
import textwrap
from pathlib import Path

import pytest
import soundfile as sf
import torch

from conftest import BLOCK_PROJECT_IMPORTS, make_tiny_salad, run_isolated, sine

LOADER = BLOCK_PROJECT_IMPORTS + textwrap.dedent(
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoProcessor

    folder, out = sys.argv[1], sys.argv[2]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = torch.load(folder + "/inputs.pt")
    fresh = processor(text=inputs.pop("text"), audio=[a.numpy() for a in inputs.pop("audio")], sampling_rate=16000)
    result = {"processor": type(processor).__name__, "same_inputs": all(
        torch.equal(fresh[k], inputs[k]) for k in inputs)}
    for name, auto in (("AutoModel", AutoModel), ("AutoModelForCausalLM", AutoModelForCausalLM)):
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            result[name] = model(**fresh).logits
        result[name + "_class"] = type(model).__name__
        result[name + "_module"] = type(model).__module__
    result["generated"] = model.generate(**fresh, max_new_tokens=3, do_sample=False)
    from transformers import pipeline

    pipe = pipeline("any-to-any", model=folder, trust_remote_code=True)
    chat = [{"role": "user", "content": [{"type": "audio", "path": folder + "/clip.wav"},
                                         {"type": "text", "text": "?"}]}]
    result["pipeline"] = pipe(text=chat, max_new_tokens=3, do_sample=False)[0]["generated_text"][-1]["content"]
    result["pipeline_class"] = type(pipe.model).__module__
    torch.save(result, out)
    """
)


@pytest.mark.parametrize("build", [dict(adapter_type="transformer"),
                                   dict(adapter_type="transcript", stack_factor=25, transcript_prompt_ids=[2])],
                         ids=["transformer", "transcript"])
def test_remote_code_round_trip(tmp_path, build):
    model, processor = make_tiny_salad(**build)
    folder = tmp_path / "salad-tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    # Every flat remote-code file travels with the checkpoint (the builder, the trust-checking loader and the package
    # init are not remote code).
    package = Path(__import__("modeling_salad").__file__).parent
    remote_files = {p.name for p in package.glob("*.py")} - {"__init__.py", "builder.py", "loading.py"}
    assert {"configuration_salad.py", "modeling_salad.py", "processing_salad.py", "projectors.py"} <= remote_files
    for name in sorted(remote_files) + ["model.safetensors"]:
        assert (folder / name).exists(), name
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == auto_map["AutoModelForCausalLM"] == "modeling_salad.SaladForCausalLM"
    assert auto_map["AutoConfig"] == "configuration_salad.SaladConfig"

    text, audio = ["hi <|audio|>", "two <|audio|> clips <|audio|>"], [sine(0.9), sine(0.3, seed=1), sine(1.4, seed=2)]
    inputs = dict(processor(text=text, audio=audio, sampling_rate=16000))
    with torch.no_grad():
        expected = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    torch.save({**inputs, "text": text, "audio": [torch.from_numpy(a) for a in audio]}, folder / "inputs.pt")
    sf.write(folder / "clip.wav", audio[0], 16000)
    chat = [{"role": "user", "content": [{"type": "audio", "path": str(folder / "clip.wav")},
                                         {"type": "text", "text": "?"}]}]
    chat_inputs = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    with torch.no_grad():
        answer_ids = model.generate(**chat_inputs, max_new_tokens=3, do_sample=False)
    answer_ids = answer_ids[0, chat_inputs["input_ids"].shape[1]:]
    answer = processor.tokenizer.decode(answer_ids, skip_special_tokens=True)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = run_isolated(LOADER, folder, tmp_path, cwd=workdir)
    assert result["processor"] == "SaladProcessor" and result["same_inputs"]
    for name in ("AutoModel", "AutoModelForCausalLM"):
        assert result[name + "_class"] == "SaladForCausalLM"
        assert result[name + "_module"].startswith("transformers_modules"), result[name + "_module"]
        torch.testing.assert_close(result[name], expected)
    assert torch.equal(result["generated"], generated)
    assert result["pipeline"] == answer and result["pipeline_class"].startswith("transformers_modules")
