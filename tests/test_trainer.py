"""DistillationTrainer: 2-step Stage I / Stage II runs on CPU, what trains and what must not, teacher modes, resume."""

import json
import os

import pytest
import torch
from transformers import TrainerCallback

from trainers import DistillationConfig, DistillationTrainer
from trainers.config import DataArguments
from trainers.data import build_training_dataset
from trainers.tiny import build_tiny_salad

from test_posterior_adapter import tiny_model

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def dataset():
    return build_training_dataset(DataArguments(tiny_documents=4), text_replay_ratio=0.0)


def make_args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
                  report_to="none", save_strategy="no", learning_rate=1e-2, adapter_learning_rate=2e-2,
                  max_length=128, kd_chunk_size=16, seed=0, lr_scheduler_type="constant",
                  dataloader_num_workers=0, disable_tqdm=True, use_cpu=True, bf16=False)
    values.update(overrides)
    return DistillationConfig(**values)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module, prefix):
    after = module.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


def probe_batch(trainer, dataset):
    return trainer.data_collator([dataset[i] for i in range(2)])


@pytest.mark.parametrize("trainable,teacher", [("adapter", "shared"), ("adapter+lora", "base"),
                                               ("adapter+llm", "frozen_copy"), ("llm", "frozen_copy")])
def test_two_steps_train_the_right_parts_and_the_teacher_never_drifts(tmp_path, dataset, trainable, teacher):
    model, processor = build_tiny_salad()
    args = make_args(tmp_path, trainable=trainable, lora_r=4)
    assert args.teacher_mode == teacher  # the default follows `trainable`
    trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    batch = probe_batch(trainer, dataset)
    teacher_before = trainer.teacher_logits(batch["teacher_input_ids"], batch["teacher_attention_mask"],
                                            batch["teacher_positions"])
    before = snapshot(model)
    trainer.train()
    history = [h for h in trainer.state.log_history if "kd_loss" in h]
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["kd_loss"])) for h in history)
    assert changed(before, model, "multi_modal_projector.") == (trainable != "llm")
    assert not changed(before, model, "audio_tower.")
    base_llm = {k: v for k, v in before.items() if k.startswith("language_model.") and "lora_" not in k}
    llm_changed = changed(base_llm, model, "language_model.")
    assert llm_changed == (trainable in ("adapter+llm", "llm"))
    if trainable == "adapter+lora":
        assert changed({k: v for k, v in before.items() if "lora_B" in k}, model, "language_model.")
    teacher_after = trainer.teacher_logits(batch["teacher_input_ids"], batch["teacher_attention_mask"],
                                           batch["teacher_positions"])
    torch.testing.assert_close(teacher_after, teacher_before, rtol=0, atol=0)
    # the student's own LLM did move away from the teacher when it trains
    if trainable != "adapter":
        student = trainer.model.language_model(input_ids=batch["teacher_input_ids"],
                                               attention_mask=batch["teacher_attention_mask"]).logits
        assert not torch.allclose(student.gather(1, batch["teacher_positions"].unsqueeze(-1).expand(
            -1, -1, student.shape[-1])), teacher_after)


def test_stage1_then_stage2_from_pre_decay_checkpoint(tmp_path, dataset):
    from modeling_salad import SaladForCausalLM, SaladProcessor
    from transformers import AutoModel

    model, processor = build_tiny_salad()
    args = make_args(tmp_path, trainable="adapter+llm", max_steps=4, lr_scheduler_type="warmup_stable_decay",
                     warmup_steps=1, decay_fraction=0.5, save_strategy="steps", save_steps=4)
    DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor).train()
    pre_decay = tmp_path / "out" / "checkpoint-pre-decay"
    assert json.loads((pre_decay / "trainer_state.json").read_text())["global_step"] == 2
    for folder in (pre_decay, tmp_path / "out" / "checkpoint-4"):
        loaded = AutoModel.from_pretrained(folder, trust_remote_code=True)
        assert type(loaded).__name__ == "SaladForCausalLM"
    # Stage II: continue from the pre-decay weights, decaying linearly to 0 over its own steps
    stage2_model = SaladForCausalLM.from_pretrained(pre_decay)
    stage2_args = make_args(tmp_path, output_dir=str(tmp_path / "stage2"), trainable="adapter+llm",
                            lr_scheduler_type="warmup_stable_decay", warmup_steps=0, decay_fraction=1.0,
                            save_pre_decay_checkpoint=False)
    trainer = DistillationTrainer(model=stage2_model, args=stage2_args, train_dataset=dataset,
                                  processing_class=SaladProcessor.from_pretrained(pre_decay))
    trainer.train()
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert lrs[0] > lrs[-1] >= 0


class StopAfter(TrainerCallback):
    """Simulates an interrupted job."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.mark.parametrize("trainable", ["adapter+llm", "adapter+lora"])
def test_resume_equals_straight_run(tmp_path, dataset, trainable):
    def run(out, resume=None, stop_after=None):
        model, processor = build_tiny_salad()
        args = make_args(tmp_path, output_dir=str(out), trainable=trainable, lora_r=4, max_steps=4,
                         save_strategy="steps", save_steps=2, lr_scheduler_type="linear")
        trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                                      callbacks=[StopAfter(stop_after)] if stop_after else None)
        trainer.train(resume_from_checkpoint=resume)
        return trainer.model

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=2)
    resumed = run(tmp_path / "c", resume=str(tmp_path / "b" / "checkpoint-2"))
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # the saved checkpoint is plain full weights (LoRA merged) that reproduce the trained student
    from transformers import AutoModel

    loaded = AutoModel.from_pretrained(tmp_path / "c" / "checkpoint-4", trust_remote_code=True).eval()
    assert not any("lora_" in k for k in loaded.state_dict())
    ids = torch.tensor([[5, 70, 80, 90, 100, 33]])
    resumed.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, resumed(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


def test_teacher_from_a_path_must_share_the_tokenizer(tmp_path, dataset):
    model, processor = build_tiny_salad()
    teacher_dir = tmp_path / "teacher"
    model.language_model.save_pretrained(teacher_dir)
    processor.tokenizer.save_pretrained(teacher_dir)
    args = make_args(tmp_path, trainable="adapter", teacher_model_name_or_path=str(teacher_dir))
    trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    assert trainer.teacher_mode == "explicit" and trainer.teacher_model is not None
    other_model, other_processor = build_tiny_salad(seed=1)
    other_processor.tokenizer.add_tokens(["zzzz"])
    bad_dir = tmp_path / "bad"
    other_model.language_model.save_pretrained(bad_dir)
    # swap two token ids: same size, different mapping
    vocab = other_processor.tokenizer.backend_tokenizer
    from tokenizers import Tokenizer
    import json as _json
    spec = _json.loads(vocab.to_str())
    v = spec["model"]["vocab"]
    a, b = list(v)[:2]
    v[a], v[b] = v[b], v[a]
    other_processor.tokenizer._tokenizer = Tokenizer.from_str(_json.dumps(spec))
    other_processor.tokenizer.save_pretrained(bad_dir)
    with pytest.raises(ValueError, match="tokenizer"):
        DistillationTrainer(model=build_tiny_salad()[0], args=make_args(tmp_path, trainable="adapter",
                                                                         teacher_model_name_or_path=str(bad_dir)),
                            train_dataset=dataset, processing_class=processor)


def test_teacher_without_the_audio_token_distils_over_the_shared_vocabulary(tmp_path, dataset):
    """The base text LLM as teacher (as Stage II of the demo uses it): the student's vocabulary is the teacher's plus
    the appended <|audio|> id; training works and F compares the shared ids only."""
    import copy

    from trainers.diagnostics import forgetting
    from trainers.tiny import tiny_documents

    model, processor = build_tiny_salad()
    vocab = model.get_output_embeddings().weight.shape[0]
    assert model.config.audio_token_id == vocab - 1
    teacher = copy.deepcopy(model.language_model)
    teacher.resize_token_embeddings(vocab - 1)
    assert forgetting(model, teacher, processor, tiny_documents(2)) == pytest.approx(0.0, abs=1e-6)
    trainer = DistillationTrainer(model=model, args=make_args(tmp_path, trainable="llm"), train_dataset=dataset,
                                  processing_class=processor, teacher_model=teacher)
    trainer.train()
    history = [h for h in trainer.state.log_history if "kd_loss" in h]
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["kd_loss"])) for h in history)
    # a teacher with an unrelated extra id (not an added token of the student) is refused
    bigger = copy.deepcopy(model.language_model)
    bigger.resize_token_embeddings(vocab + 1)
    with pytest.raises(ValueError, match="vocabulary size"):
        DistillationTrainer(model=build_tiny_salad()[0], args=make_args(tmp_path, trainable="llm"),
                            train_dataset=dataset, processing_class=processor, teacher_model=bigger)


def test_diagnostics_are_zero_for_identical_models_and_positive_for_speech(dataset):
    from trainers.diagnostics import forgetting, misalignment
    from trainers.tiny import tiny_documents

    model, processor = build_tiny_salad()
    docs = tiny_documents(3)
    assert forgetting(model, model.language_model, processor, docs) == pytest.approx(0.0, abs=1e-6)
    assert forgetting(model, build_tiny_salad(seed=1)[0].language_model, processor, docs) > 0
    assert misalignment(model, processor, docs) > 0
    with pytest.raises(ValueError, match="spoken"):
        misalignment(model, processor, ["only text here"])


def test_per_parameter_adapter_learning_rates_set_their_optimizer_groups(tmp_path, dataset):
    model, processor = build_tiny_salad()
    names = [n for n, p in model.multi_modal_projector.named_parameters() if p.requires_grad]
    chosen = names[0]
    args = make_args(tmp_path, trainable="adapter+llm", adapter_parameter_learning_rates=f'{{"{chosen}": 0.5}}')
    assert args.adapter_parameter_learning_rates == {chosen: 0.5}  # the CLI's JSON form
    trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    optimizer = trainer.create_optimizer()
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    projector = dict(model.multi_modal_projector.named_parameters())
    assert rate[id(projector[chosen])] == 0.5
    assert all(rate[id(projector[n])] == 2e-2 for n in names[1:])
    assert all(rate[id(p)] == 1e-2 for n, p in model.language_model.named_parameters() if p.requires_grad)


def test_bad_per_parameter_learning_rates_are_refused(tmp_path, dataset):
    for value, message in (("{not json", "JSON object"), ('{"x": -1}', ">= 0"), ("[1e-3]", "mapping")):
        with pytest.raises(ValueError, match=message):
            make_args(tmp_path, adapter_parameter_learning_rates=value)
    model, processor = build_tiny_salad()
    args = make_args(tmp_path, adapter_parameter_learning_rates={"no_such_parameter": 1e-3})
    trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    with pytest.raises(ValueError, match="no_such_parameter"):
        trainer.create_optimizer()


def test_invalid_teacher_combinations_are_refused(tmp_path):
    with pytest.raises(ValueError, match="shared"):
        make_args(tmp_path, trainable="adapter+llm", teacher_mode="shared")
    with pytest.raises(ValueError, match="teacher_model_name_or_path"):
        make_args(tmp_path, teacher_mode="runs/base-llm")  # a path is not a mode
    with pytest.raises(ValueError, match="not both"):
        make_args(tmp_path, teacher_mode="shared", teacher_model_name_or_path="runs/base-llm")
    args = make_args(tmp_path, trainable="adapter+llm", teacher_model_name_or_path="runs/base-llm")
    assert args.teacher_mode is None and args.teacher_model_name_or_path == "runs/base-llm"
    assert make_args(tmp_path, trainable="adapter+lora").teacher_mode == "base"
    with pytest.raises(ValueError, match="trainable"):
        make_args(tmp_path, trainable="everything")


def test_text_only_batches_with_a_frozen_llm_step_without_error(tmp_path):
    """Replay-only batches cannot move the adapter: the step runs with zero gradients instead of failing."""
    model, processor = build_tiny_salad()
    text_only = build_training_dataset(DataArguments(tiny_documents=4), text_replay_ratio=0.0)
    text_only = text_only.map(lambda doc: {"spans": [{"text": s["text"], "audio": None} for s in doc["spans"]]})
    before = snapshot(model)
    trainer = DistillationTrainer(model=model, args=make_args(tmp_path, trainable="adapter"),
                                  train_dataset=text_only, processing_class=processor)
    trainer.train()
    assert len([h for h in trainer.state.log_history if "kd_loss" in h]) == 2
    assert not changed(before, model, "language_model.")


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_fused_default_equals_the_materialized_objective(tmp_path, dataset, alpha):
    """The trainer's default reads hidden states; loss and every gradient equal the logits path's."""
    model, processor = build_tiny_salad()
    trainer = DistillationTrainer(model=model, args=make_args(tmp_path, trainable="adapter+llm", alpha=alpha,
                                                              kd_chunk_size=7),
                                  train_dataset=dataset, processing_class=processor)
    assert trainer.args.kd_implementation == "fused"
    batch = probe_batch(trainer, dataset)
    results = []
    for implementation in ("fused", "materialized"):
        trainer.args.kd_implementation = implementation
        model.zero_grad()
        loss = trainer.compute_loss(model, batch, num_items_in_batch=int(batch["distill_mask"].sum()))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (fused, fused_grads), (materialized, materialized_grads) = results
    torch.testing.assert_close(fused, materialized, rtol=1e-5, atol=1e-6)
    assert fused_grads.keys() == materialized_grads.keys()
    assert any("lm_head" in n or "embed_tokens" in n for n in fused_grads)  # the head weight gets its gradient
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], materialized_grads[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("llm", ["llama", "qwen2"])
def test_final_hidden_states_times_the_head_are_the_logits(llm):
    """The decoder output the fused loss reads is after the final norm, for the LLM families SALAD uses."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from trainers.kd import hidden_at_positions, logits_at_positions, output_head_weight

    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[llm]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_cls(vocab_size=50, hidden_size=16, intermediate_size=32,
                                                        num_hidden_layers=2, num_attention_heads=2,
                                                        num_key_value_heads=1)).eval()
    input_ids = torch.randint(0, 50, (2, 9))
    positions = torch.tensor([[0, 3, 3, 8], [1, 2, 5, 7]])
    with torch.no_grad():
        hidden = hidden_at_positions(model, positions, input_ids=input_ids)
        logits = logits_at_positions(model, positions, input_ids=input_ids)
        full = model(input_ids=input_ids).logits
    torch.testing.assert_close(hidden @ output_head_weight(model).t(), logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, full.gather(1, positions.unsqueeze(-1).expand(-1, -1, 50)))


def test_kd_implementation_choices_are_checked(tmp_path, dataset):
    with pytest.raises(ValueError, match="kd_implementation"):
        make_args(tmp_path, kd_implementation="fast")
    with pytest.raises(ValueError, match="alpha=1"):
        make_args(tmp_path, kd_implementation="liger", alpha=0.5)
    model, processor = build_tiny_salad()
    with pytest.raises(ValueError, match="CUDA"):
        DistillationTrainer(model=model, args=make_args(tmp_path, kd_implementation="liger"),
                            train_dataset=dataset, processing_class=processor)
    model.language_model.lm_head = torch.nn.Linear(model.language_model.lm_head.in_features,
                                                   model.language_model.lm_head.out_features, bias=True)
    with pytest.raises(ValueError, match="bias-free"):
        DistillationTrainer(model=model, args=make_args(tmp_path), train_dataset=dataset, processing_class=processor)


def test_the_training_log_carries_the_adapters_learned_scalars(tmp_path, dataset):
    model, processor = tiny_model(posterior_temperature=1.0, posterior_numeral_bias=True)
    projector = model.multi_modal_projector
    projector.numeral_tokens.fill_(1.0)  # every token a numeral: the scalar then meets every slot
    args = make_args(tmp_path, max_steps=2, adapter_parameter_learning_rates={"numeral_bias": 0.5})
    trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "kd_loss" in h]
    assert len(logged) == 2 and all({"adapter/numeral_bias", "adapter/posterior_temperature"} <= set(h)
                                    for h in logged)
    assert logged[-1]["adapter/numeral_bias"] == pytest.approx(float(projector.numeral_bias.detach()))
    assert logged[-1]["adapter/posterior_temperature"] == pytest.approx(float(projector.log_temperature.detach().exp()))
    assert logged[0]["adapter/numeral_bias"] != 0  # the value after each step, not the start value


def test_frame_adapters_log_no_scalars(tmp_path, dataset):
    model, processor = build_tiny_salad()
    trainer = DistillationTrainer(model=model, args=make_args(tmp_path, max_steps=1), train_dataset=dataset,
                                  processing_class=processor)
    trainer.train()
    assert not any(key.startswith("adapter/") for h in trainer.state.log_history for key in h)
