"""projector_lora_r: LoRA on the adapter (the posterior front end's Whisper decoder), merged into every checkpoint."""

import os
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from conftest import BLOCK_PROJECT_IMPORTS, run_isolated
from test_posterior_adapter import speech_inputs, tiny_model
from test_trainer import dataset  # noqa: F401  (the module-scoped fixture)
from test_trainer import make_args as trainer_args
from trainers import DistillationTrainer
from trainers.saving import lora_modules, merged_state_dict

pytestmark = pytest.mark.timeout(300)

DECODER = "multi_modal_projector.decoder."
OWN = {"multi_modal_projector.log_temperature", "multi_modal_projector.filler"}
DEFAULT_TARGETS = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}

# Loads a folder where neither this repository's packages nor peft can be imported: the checkpoint must stand alone.
LOADER = BLOCK_PROJECT_IMPORTS + textwrap.dedent(
    """
    sys.modules["peft"] = None  # `import peft` fails and find_spec reports it missing, as where it is not installed
    import torch
    from transformers import AutoModel

    folder, out = sys.argv[1], sys.argv[2]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**torch.load(folder + "/inputs.pt")).logits
    torch.save({"state_dict": model.state_dict(), "logits": logits, "module": type(model).__module__}, out)
    """
)


def make_args(tmp_path, **overrides):
    return trainer_args(tmp_path, **{"max_steps": 3, "projector_lora_r": 4, **overrides})


def posterior_trainer(tmp_path, dataset, callbacks=None, **overrides):
    model, processor = tiny_model(posterior_temperature=1.0)
    trainer = DistillationTrainer(model=model, args=make_args(tmp_path, **overrides), train_dataset=dataset,
                                  processing_class=processor, callbacks=callbacks)
    return trainer, model, processor


def snapshot(state):
    return {k: v.detach().clone() for k, v in state.items()}


def test_only_lora_matrices_temperature_and_filler_train(tmp_path, dataset):
    _, model, processor = posterior_trainer(tmp_path, dataset)
    from peft.tuners.lora import LoraLayer

    wrapped = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    assert len(wrapped) == 10 and all(name.startswith(DECODER) for name in wrapped)  # self + cross attention, MLP
    assert {name.rsplit(".", 1)[-1] for name in wrapped} == DEFAULT_TARGETS
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert OWN < trainable and all("lora_" in n for n in trainable - OWN)
    assert all(n.startswith(DECODER) for n in trainable - OWN)
    model.train()
    model(**speech_inputs(processor, (1.0,))).logits.float().pow(2).mean().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in with_grad if "lora_B" in n)


def saved_state(folder):
    return {k: v for f in os.listdir(folder) if f.startswith("model") and f.endswith(".safetensors")
            for k, v in load_file(os.path.join(folder, f)).items()}


def load_isolated(folder, tmp_path):
    """The folder loaded by AutoModel(trust_remote_code=True) in a subprocess without this repository or peft."""
    return run_isolated(LOADER, folder, tmp_path)


def test_a_short_run_moves_the_merged_decoder_and_saves_plain_checkpoints(tmp_path, dataset):
    trainer, model, processor = posterior_trainer(
        tmp_path, dataset, lr_scheduler_type="warmup_stable_decay", warmup_steps=0, decay_fraction=0.5,
        save_strategy="steps", save_steps=2)
    before = snapshot(model.state_dict())
    merged_before = snapshot(merged_state_dict(model))
    trainer.train()
    out = tmp_path / "out"
    trainer.save_model(str(out))
    after, merged = model.state_dict(), merged_state_dict(model)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("language_model.", "audio_tower.")))
    assert all(torch.equal(before[k], after[k]) for k in before if "base_layer" in k)  # saving merged nothing in place
    assert lora_modules(model)
    moved = [k for k in merged if k.startswith(DECODER) and not torch.equal(merged[k], merged_before[k])]
    assert {k.rsplit(".", 2)[-2] for k in moved} == DEFAULT_TARGETS
    assert not torch.equal(after["multi_modal_projector.log_temperature"],
                           before["multi_modal_projector.log_temperature"])
    for folder in (out / "checkpoint-pre-decay", out / "checkpoint-2", out / "checkpoint-3", out):
        keys = set(saved_state(folder))
        assert not any("lora_" in k or "base_layer" in k for k in keys), folder
        assert f"{DECODER}layers.0.fc1.weight" in keys, folder
    assert (out / "checkpoint-2" / "lora_training_state.safetensors").is_file()  # what a resume reads

    inputs = dict(speech_inputs(processor, (1.0,)))
    torch.save(inputs, out / "inputs.pt")
    result = load_isolated(out, tmp_path)
    assert result["module"].startswith("transformers_modules")
    loaded = result["state_dict"]
    assert set(loaded) == set(merged)
    assert all(torch.equal(loaded[k], merged[k]) for k in merged)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(result["logits"], model(**inputs).logits, rtol=1e-4, atol=1e-5)


class StopAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_equals_straight_run_with_the_llm_training_in_full(tmp_path, dataset):
    def run(out, resume=None, stop_after=None):
        trainer, model, _ = posterior_trainer(tmp_path, dataset, [StopAfter(stop_after)] if stop_after else None,
                                              output_dir=str(out), trainable="adapter+llm", max_steps=4,
                                              save_strategy="steps", save_steps=2, lr_scheduler_type="linear")
        trainer.train(resume_from_checkpoint=resume)
        return model

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=2)
    resumed = run(tmp_path / "c", resume=str(tmp_path / "b" / "checkpoint-2"))
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("overrides,match", [
    (dict(projector_lora_r=-1), "projector_lora_r must be >= 0"),
    (dict(trainable="llm"), "trainable='llm' freezes it"),
    (dict(projector_lora_alpha=0), "projector_lora_alpha must be > 0"),
    (dict(projector_lora_target_modules=[]), "empty"),
    (dict(projector_lora_r=0, projector_lora_target_modules=["fc1"]), "needs projector_lora_r > 0"),
])
def test_bad_settings_are_refused_by_the_config(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        make_args(tmp_path, **overrides)


@pytest.mark.parametrize("overrides,match", [
    (dict(projector_lora_target_modules=["fc1", "gate_proj"]),
     r"\['gate_proj'\] match no linear layer.*'fc1', 'fc2', 'k_proj', 'out_proj', 'q_proj', 'v_proj'"),
    (dict(projector_lora_r=32), r"wide enough for a rank-32 LoRA.*'fc1', 'fc2', 'k_proj'"),  # d_model 32
], ids=["unknown-name", "rank-too-high"])
def test_targets_that_match_nothing_name_the_layers_there_are(tmp_path, dataset, overrides, match):
    model, processor = tiny_model(posterior_temperature=1.0)
    with pytest.raises(ValueError, match=match):
        DistillationTrainer(model=model, args=make_args(tmp_path, **overrides), train_dataset=dataset,
                            processing_class=processor)
    assert not lora_modules(model)


def test_the_option_comes_from_yaml_and_the_command_line(tmp_path):
    from trainers.train import parse_train_args

    config = tmp_path / "run.yaml"
    config.write_text("tiny_random: true\nuse_cpu: true\nbf16: false\ntrainable: adapter\nprojector_lora_r: 8\n"
                      "projector_lora_target_modules: [fc1, fc2]\n")
    _, _, args = parse_train_args([str(config), "--output_dir", str(tmp_path), "--projector_lora_alpha", "4"])
    assert (args.projector_lora_r, args.projector_lora_alpha, args.projector_lora_target_modules) == \
        (8, 4, ["fc1", "fc2"])
    _, _, args = parse_train_args([str(config), "--output_dir", str(tmp_path), "--projector_lora_r", "2"])
    assert (args.projector_lora_r, args.projector_lora_alpha) == (2, 4)  # alpha defaults to 2r
