"""SALAD's cross-modal DistillationTrainer (Stage I and Stage II)."""

from __future__ import annotations

import contextlib
import copy
import os

import torch
from torch import nn
from transformers import Trainer
from trl import SFTTrainer

from .callbacks import DiagnosticsCallback, EpochToCollatorCallback, PreDecayCheckpointCallback
from .clip_states import precompute_heard_clips
from .collator import SpanDocumentCollator
from .config import DistillationConfig
from .kd import hidden_at_positions, logits_at_positions, output_head_weight
from .losses import fused_salad_objective, liger_distillation_loss, salad_objective, shared_vocabulary
from .projector_lora import apply_projector_lora
from .saving import (
    check_resume_schedule,
    export_self_contained,
    lora_modules,
    merged_state_dict,
    save_checkpoint_staged,
)

__all__ = ["DistillationTrainer", "LoraDisabledTeacher"]

_STUDENT_KEYS = ("input_ids", "attention_mask", "input_features", "input_features_mask",
                 "audio_encoder_states", "audio_encoder_mask")
_DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@contextlib.contextmanager
def lora_disabled(module: nn.Module):
    """Run ``module`` with every LoRA layer bypassed; requires_grad flags are restored afterwards."""
    layers = lora_modules(module)
    flags = {p: p.requires_grad for layer in layers for p in layer.parameters()}
    try:
        for layer in layers:
            layer.enable_adapters(False)
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for p, flag in flags.items():
            p.requires_grad_(flag)


class LoraDisabledTeacher(nn.Module):
    """The student's LLM with LoRA disabled, called like a causal LM (teacher='base')."""

    def __init__(self, language_model: nn.Module):
        super().__init__()
        self.language_model = language_model

    @property
    def config(self):
        return self.language_model.config

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def forward(self, **kwargs):
        with lora_disabled(self.language_model):
            return self.language_model(**kwargs)


class DistillationTrainer(SFTTrainer):
    """Cross-modal distillation trainer of SALAD (arXiv 2510.13632), a ``trl.SFTTrainer`` subclass.

    Not TRL's ``trl.DistillationTrainer``: TRL's is on-policy (the student generates, the teacher scores the same
    prompt). Here the teacher (the frozen text LLM) reads the **all-text** rendering of a span document while the
    student reads the same document with some spans **spoken**; the loss ``α·KL(teacher ‖ student) + (1−α)·NLL``
    is taken at aligned positions whose next token is text (``student_positions``/``teacher_positions`` from
    :class:`~trainers.collator.SpanDocumentCollator`), normalized by the global count of distilled positions.

    Teacher modes (``args.teacher_mode``): ``"shared"`` (the student's own LLM, frozen), ``"base"`` (the LLM with its
    LoRA adapters disabled), ``"frozen_copy"`` (a frozen copy of the initial LLM, for full fine-tuning); or
    ``args.teacher_model_name_or_path``, another text LLM with the same tokenizer. The teacher always runs in eval mode under ``no_grad``.

    Args:
        model: a ``SaladForCausalLM``.
        args: a :class:`~trainers.DistillationConfig`.
        train_dataset: span documents (``datasets.Dataset``/``IterableDataset``).
        processing_class: the ``SaladProcessor``.
        data_collator: defaults to a ``SpanDocumentCollator`` built from ``args``.
        teacher_model: an explicit text LLM (overrides ``args.teacher_mode`` and ``args.teacher_model_name_or_path``).
        probe_documents: fixed probe set for the M/F diagnostics (every ``args.diagnostics_steps``).
    """

    _tag_names = ["trl", "salad", "distillation", "speech"]
    _name = "SALAD cross-modal distillation"
    _paper = {
        "title": "Closing the Gap Between Text and Speech Understanding in LLMs",
        "id": "2510.13632",
        "citation": "@inproceedings{cuervo2026salad, title={Closing the Gap Between Text and Speech Understanding "
                    "in LLMs}, author={Cuervo, Santiago and others}, booktitle={ICLR}, year={2026}}",
    }

    def __init__(self, model, args: DistillationConfig, train_dataset=None, eval_dataset=None,
                 processing_class=None, data_collator=None, teacher_model: nn.Module | None = None,
                 probe_documents: list[dict] | None = None, callbacks=None, **kwargs):
        if not isinstance(args, DistillationConfig):
            raise ValueError("args must be a trainers.DistillationConfig")
        if processing_class is None:
            raise ValueError("processing_class (the SaladProcessor) is required")
        for name in ("language_model", "multi_modal_projector", "audio_tower"):
            if not hasattr(model, name):
                raise ValueError(f"model must be a SaladForCausalLM (missing .{name})")
        self.teacher_mode = args.teacher_mode
        teacher_model = self._setup_trainable_and_teacher(model, args, processing_class, teacher_model)
        self._check_kd_implementation(model, teacher_model, args)
        if data_collator is None:
            data_collator = SpanDocumentCollator(
                processing_class, max_length=args.max_length, padding_side=args.padding_side,
                speech_policy=args.speech_policy, speech_probability=args.speech_probability, seed=args.seed,
                pad_to_multiple_of=args.pad_to_multiple_of)
        callbacks = list(callbacks or [])
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks, **kwargs)
        # Makes Trainer count the distilled positions (labels != -100) over all micro-batches and processes.
        self.model_accepts_loss_kwargs = True
        if args.kd_implementation != "materialized" and self._shards_parameters():
            raise ValueError("the fused distillation loss reads the LM heads' weights outside the model's forward, "
                             "where FSDP and DeepSpeed ZeRO-3 hold only a shard; set kd_implementation='materialized' "
                             "with them")
        self.teacher_model = None
        if teacher_model is not None:
            teacher_model.requires_grad_(False).eval()
            if self.is_deepspeed_enabled:
                from trl.models.utils import prepare_deepspeed

                self.teacher_model = prepare_deepspeed(teacher_model, self.accelerator)
            else:
                self.teacher_model = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
        self.add_callback(EpochToCollatorCallback(data_collator))
        if args.save_pre_decay_checkpoint and args.lr_scheduler_type == "warmup_stable_decay":
            self.add_callback(PreDecayCheckpointCallback(self))
        self.probe_documents = list(probe_documents or [])[: args.probe_size] if args.diagnostics_steps else []
        if self.probe_documents:
            self.add_callback(DiagnosticsCallback(self, self.probe_documents))

    # ---------------------------------------------------------------------------------------------- setup
    def _setup_trainable_and_teacher(self, model, args, processor, teacher_model):
        model.audio_tower.requires_grad_(False)
        model.multi_modal_projector.requires_grad_(args.trainable != "llm")
        if args.projector_lora_r:
            apply_projector_lora(model.multi_modal_projector, args.projector_lora_r, args.projector_lora_alpha,
                                 args.projector_lora_target_modules)
        lm = model.language_model
        if args.trainable == "adapter":
            lm.requires_grad_(False)
        elif args.trainable in ("adapter+llm", "llm"):
            lm.requires_grad_(True)
        else:
            if not lora_modules(lm):
                from peft import LoraConfig, inject_adapter_in_model

                lm.requires_grad_(False)
                config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                    target_modules=args.lora_target_modules or _DEFAULT_LORA_TARGETS)
                inject_adapter_in_model(config, lm)
        if teacher_model is not None:
            self.teacher_mode = "explicit"
            self._check_teacher_vocab(teacher_model, processor, model)
            return teacher_model
        if args.teacher_model_name_or_path:
            from transformers import AutoModelForCausalLM

            self.teacher_mode = "explicit"
            teacher = AutoModelForCausalLM.from_pretrained(args.teacher_model_name_or_path, dtype=lm.dtype)
            self._check_teacher_vocab(teacher, processor, model, path=args.teacher_model_name_or_path)
            return teacher
        if self.teacher_mode == "frozen_copy":
            return copy.deepcopy(lm)
        return None  # "shared" / "base": the student's own LLM

    def _shards_parameters(self) -> bool:
        if self.is_fsdp_enabled:
            return True
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None) if self.is_deepspeed_enabled else None
        return plugin is not None and plugin.zero_stage == 3

    @staticmethod
    def _check_kd_implementation(model, teacher_model, args):
        """The fused paths read the heads' weights: refuse, before training, heads they cannot reproduce."""
        if args.kd_implementation == "materialized":
            return
        output_head_weight(model)
        if teacher_model is not None and args.alpha > 0:
            output_head_weight(teacher_model)
        if args.kd_implementation == "liger":
            import importlib.util

            if args.use_cpu or not torch.cuda.is_available():
                raise ValueError("kd_implementation='liger' needs a CUDA device (Liger's kernels are Triton); "
                                 "on CPU use kd_implementation='fused'")
            if importlib.util.find_spec("liger_kernel") is None:
                raise ValueError("kd_implementation='liger' needs the liger-kernel package (pip install "
                                 "liger-kernel)")

    @staticmethod
    def _check_teacher_vocab(teacher, processor, model, path=None):
        student_vocab = model.get_output_embeddings().weight.shape[0]
        teacher_vocab = teacher.get_output_embeddings().weight.shape[0]
        # The student may extend the teacher's vocabulary with added tokens (its <|audio|> placeholder) appended
        # after the teacher's ids; the loss then compares the shared ids (trainers.losses.shared_vocabulary).
        tokenizer = getattr(processor, "tokenizer", processor)
        added = set(tokenizer.get_added_vocab().values()) if hasattr(tokenizer, "get_added_vocab") else set()
        extra = [i for i in range(teacher_vocab, student_vocab) if i < len(tokenizer) and i not in added]
        if student_vocab < teacher_vocab or extra:
            raise ValueError(f"teacher vocabulary size {teacher_vocab} differs from the student's {student_vocab}; "
                             "the teacher must share the student's tokenizer")
        if path is not None:
            from transformers import AutoTokenizer

            teacher_tok = AutoTokenizer.from_pretrained(path).get_vocab()
            student_tok = processor.tokenizer.get_vocab()
            mismatched = [t for t, i in teacher_tok.items() if student_tok.get(t) != i]
            if mismatched:
                raise ValueError(f"teacher tokenizer at {path} differs from the student's on {len(mismatched)} "
                                 f"tokens (e.g. {mismatched[:3]}); distillation needs identical token ids")

    # ---------------------------------------------------------------------------------------------- teacher
    def _teacher_module(self):
        if self.teacher_model is not None:
            return self.teacher_model
        lm = self.accelerator.unwrap_model(self.model).language_model
        return LoraDisabledTeacher(lm) if self.teacher_mode == "base" else lm

    @contextlib.contextmanager
    def _teacher_eval(self):
        """The teacher module, in eval mode and under no_grad for the duration (its training flag restored)."""
        module = self._teacher_module()
        target = module.language_model if isinstance(module, LoraDisabledTeacher) else module
        was_training = target.training
        target.eval()
        try:
            with torch.no_grad():
                yield module
        finally:
            target.train(was_training)

    def teacher_logits(self, teacher_input_ids, teacher_attention_mask, positions) -> torch.Tensor:
        """Teacher logits [B, K, V] at ``positions`` of the all-text sequences (eval mode, no_grad)."""
        with self._teacher_eval() as module:
            return logits_at_positions(module, positions, input_ids=teacher_input_ids,
                                       attention_mask=teacher_attention_mask, use_cache=False)

    def teacher_hidden(self, teacher_input_ids, teacher_attention_mask, positions):
        """Teacher final hidden states [B, K, D_t] at ``positions`` and its head weight [V_t, D_t] (no_grad)."""
        with self._teacher_eval() as module:
            hidden = hidden_at_positions(module, positions, input_ids=teacher_input_ids,
                                         attention_mask=teacher_attention_mask, use_cache=False)
            return hidden, output_head_weight(self.accelerator.unwrap_model(module)).detach()

    # ---------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        s_pos, mask = inputs["student_positions"], inputs["distill_mask"]
        targets = inputs["input_ids"].gather(1, (s_pos + 1).clamp(max=inputs["input_ids"].shape[1] - 1))
        objective = self._materialized_objective if self.args.kd_implementation == "materialized" else \
            self._fused_objective
        loss, kd, nll, outputs = objective(model, inputs, targets, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the divisor is global
        if torch.is_grad_enabled() and not loss.requires_grad:
            # Nothing trainable shapes this batch (e.g. text-only replay while only the adapter trains): a step
            # with zero gradients rather than a backward error.
            loss = loss + sum(p.sum() * 0 for p in model.parameters() if p.requires_grad)
        self._log_terms(mode, mask, num_items_in_batch, kd=kd, nll=nll)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's averaged terms, plus in training the adapter's learned scalars (`adapter/<name>`): a learned
        temperature or bias is read off the log instead of out of a checkpoint."""
        if self.model.training:
            projector = getattr(self.accelerator.unwrap_model(self.model), "multi_modal_projector", None)
            scalars = projector.logged_scalars() if hasattr(projector, "logged_scalars") else {}
            logs.update({f"adapter/{name}": value for name, value in scalars.items()})
        super().log(logs, start_time)

    def _student_inputs(self, inputs):
        return {k: inputs[k] for k in _STUDENT_KEYS if k in inputs}

    def _fused_objective(self, model, inputs, targets, num_items_in_batch):
        """The objective from final hidden states: no [positions, vocabulary] logits beyond one chunk."""
        args = self.args
        student_hidden = hidden_at_positions(model, inputs["student_positions"], use_cache=False,
                                             **self._student_inputs(inputs))
        student_weight = output_head_weight(self.accelerator.unwrap_model(model))
        teacher_hidden = teacher_weight = None
        if args.alpha > 0:
            teacher_hidden, teacher_weight = self.teacher_hidden(
                inputs["teacher_input_ids"], inputs["teacher_attention_mask"], inputs["teacher_positions"])
        if args.kd_implementation == "liger":
            kd = liger_distillation_loss(student_hidden, student_weight, teacher_hidden, teacher_weight,
                                         inputs["distill_mask"], args.beta, args.temperature, num_items_in_batch)
            return kd, kd, None, {"hidden_states": student_hidden}
        loss, kd, nll = fused_salad_objective(
            student_hidden, student_weight, teacher_hidden, teacher_weight, targets, inputs["distill_mask"],
            alpha=args.alpha, beta=args.beta, temperature=args.temperature, num_items_in_batch=num_items_in_batch,
            chunk_size=args.kd_chunk_size)
        return loss, kd, nll, {"hidden_states": student_hidden}

    def _materialized_objective(self, model, inputs, targets, num_items_in_batch):
        """The objective from the logits at the distilled positions ([B, K, V] for the student and the teacher)."""
        args = self.args
        student_logits = logits_at_positions(model, inputs["student_positions"], use_cache=False,
                                             **self._student_inputs(inputs))
        teacher_logits = None
        if args.alpha > 0:
            teacher_logits = self.teacher_logits(inputs["teacher_input_ids"], inputs["teacher_attention_mask"],
                                                 inputs["teacher_positions"])
        scored = student_logits if teacher_logits is None else shared_vocabulary(student_logits, teacher_logits)
        loss, kd, nll = salad_objective(scored, teacher_logits, targets, inputs["distill_mask"], alpha=args.alpha,
                                        beta=args.beta, temperature=args.temperature,
                                        num_items_in_batch=num_items_in_batch, chunk_size=args.kd_chunk_size)
        return loss, kd, nll, {"logits": student_logits}

    def _log_terms(self, mode, mask, num_items_in_batch, **terms):
        """Log each term as the mean over this micro-batch's distilled positions of all processes."""
        local_count = mask.sum().to(torch.float32)
        count = self.accelerator.gather_for_metrics(local_count.reshape(1)).sum()
        for name, value in terms.items():
            if value is None:
                continue
            scale = num_items_in_batch if num_items_in_batch is not None else local_count.clamp(min=1)
            local_sum = value.detach().float() * torch.as_tensor(scale, dtype=torch.float32, device=value.device)
            total = self.accelerator.gather_for_metrics(local_sum.reshape(1)).sum()
            key = "kd_loss" if name == "kd" else name
            self._metrics[mode][key].append(float(total / count.clamp(min=1)))
        self._metrics[mode]["distilled_positions"].append(float(count))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ---------------------------------------------------------------------------------------------- optimizer
    @staticmethod
    def adapter_parameter_name(name: str) -> str | None:
        """The name of model parameter `name` inside the adapter, or None when it is not an adapter parameter."""
        marker = "multi_modal_projector."
        return name.split(marker, 1)[1] if marker in name else None

    def parameter_learning_rate(self, name: str) -> float:
        """The learning rate of the model parameter `name`: the LLM's, the adapter's, or a per-parameter override
        (`adapter_parameter_learning_rates`, names inside the adapter)."""
        inner = self.adapter_parameter_name(name)
        if inner is None:
            return self.args.learning_rate
        overrides = self.args.adapter_parameter_learning_rates or {}
        if inner in overrides:
            return overrides[inner]
        return self.args.learning_rate if self.args.adapter_learning_rate is None else self.args.adapter_learning_rate

    def check_parameter_learning_rates(self, model) -> None:
        """Refuse overrides that name no trainable adapter parameter, before any step."""
        names = {self.adapter_parameter_name(n) for n, p in model.named_parameters() if p.requires_grad} - {None}
        unknown = sorted(set(self.args.adapter_parameter_learning_rates or {}) - names)
        if unknown:
            raise ValueError(f"adapter_parameter_learning_rates names {unknown}, which are not trainable adapter "
                             f"parameters; trainable ones include {sorted(names)[:8]}")

    def create_optimizer(self, model=None):
        """AdamW with separate learning rates for the adapter (``adapter_learning_rate``, per-parameter overrides
        in ``adapter_parameter_learning_rates``) and the LLM."""
        uses_groups = self.args.adapter_learning_rate is not None or self.args.adapter_parameter_learning_rates
        if self.optimizer is not None or not uses_groups:
            return super().create_optimizer(model) if model is not None else super().create_optimizer()
        opt_model = self.model
        self.check_parameter_learning_rates(opt_model)
        decay_names = set(self.get_decay_parameter_names(opt_model))
        groups = {}
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            lr = self.parameter_learning_rate(name)
            wd = self.args.weight_decay if name in decay_names else 0.0
            groups.setdefault((lr, wd), []).append(param)
        param_groups = [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, opt_model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(param_groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """WSD: fill in the decay length (``decay_fraction`` of the steps, linear to 0) unless given."""
        if self.args.lr_scheduler_type == "warmup_stable_decay":
            kwargs = dict(self.args.lr_scheduler_kwargs or {})
            kwargs.setdefault("num_decay_steps", max(1, round(self.args.decay_fraction * num_training_steps)))
            kwargs.setdefault("decay_type", "linear")
            kwargs.setdefault("min_lr_ratio", 0.0)
            self.args.lr_scheduler_kwargs = kwargs
        return super().create_scheduler(num_training_steps, optimizer)

    def decay_start_step(self, num_training_steps: int) -> int:
        kwargs = self.args.lr_scheduler_kwargs or {}
        decay = kwargs.get("num_decay_steps", max(1, round(self.args.decay_fraction * num_training_steps)))
        return max(num_training_steps - int(decay), 0)

    def get_train_dataloader(self):
        """`Trainer.get_train_dataloader`, once the clips its batches make the student hear are in the collator's
        encoder cache (`clip_states.precompute_heard_clips`: in batches, and only those the steps read)."""
        loader = super().get_train_dataloader()
        precompute_heard_clips(self, loader)
        return loader

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """`Trainer.train`; a resume with another `max_steps` than the checkpoint's run is refused."""
        if resume_from_checkpoint:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = (get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True
                          else resume_from_checkpoint)
            if checkpoint:
                check_resume_schedule(checkpoint, self.args.max_steps)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # ---------------------------------------------------------------------------------------------- saving
    staging_run_dir: str | None = None  # set while Trainer's checkpoint writer runs into a staging folder

    def _get_output_dir(self, trial) -> str:
        return self.staging_run_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, written into a staging folder and renamed into place when complete."""
        save_checkpoint_staged(self, super()._get_output_dir(trial),
                               lambda: super(DistillationTrainer, self)._save_checkpoint(model, trial))

    def _save(self, output_dir: str | None = None, state_dict=None):
        """Self-contained folders: merged full weights, processor and remote code (AutoModel-loadable)."""
        output_dir = output_dir or self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        if lora_modules(model):
            state_dict = merged_state_dict(model, state_dict)
        super()._save(output_dir, state_dict=state_dict)
        if lora_modules(model):  # raw LoRA weights, for resuming
            from safetensors.torch import save_file

            raw = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if "lora_" in k}
            save_file(raw, os.path.join(output_dir, "lora_training_state.safetensors"))
        if self.args.should_save:
            export_self_contained(model, self.processing_class, output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = model if model is not None else self.model
        unwrapped = self.accelerator.unwrap_model(model)
        if lora_modules(unwrapped):
            from safetensors.torch import load_file

            from .saving import load_merged_into_lora

            load_merged_into_lora(unwrapped, resume_from_checkpoint)
            lora = load_file(os.path.join(resume_from_checkpoint, "lora_training_state.safetensors"))
            unwrapped.load_state_dict(lora, strict=False)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)
