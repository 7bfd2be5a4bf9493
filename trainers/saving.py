"""Checkpoints: self-contained (LoRA merged in), and never half written.

Checkpoints always hold plain full weights (LoRA merged in), so ``AutoModel.from_pretrained(dir,
trust_remote_code=True)`` loads them; the raw LoRA tensors go to ``lora_training_state.safetensors`` for resuming.
Every checkpoint folder (``checkpoint-N``, ``checkpoint-pre-decay``) is written into a hidden staging folder beside
it and renamed into place when complete, so a run killed while saving leaves the previous checkpoint intact and
no folder that a resume would mistake for a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["lora_modules", "merged_state_dict", "load_merged_into_lora", "export_self_contained",
           "save_folder_staged", "save_checkpoint_staged", "check_resume_schedule"]


def lora_modules(module: nn.Module) -> list[nn.Module]:
    """The peft LoRA layers inside ``module`` (empty when peft is missing or none were injected)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover
        return []
    return [m for m in module.modules() if isinstance(m, LoraLayer)]


def merged_state_dict(model: nn.Module, state_dict: dict | None = None) -> dict[str, torch.Tensor]:
    """Plain state dict of ``model`` with every LoRA delta added to its base weight and LoRA keys removed."""
    from peft.tuners.lora import LoraLayer

    state_dict = dict(state_dict if state_dict is not None else model.state_dict())
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        base_key = f"{name}.base_layer.weight"
        if base_key not in state_dict:
            continue
        weight = state_dict.pop(base_key).detach().clone()
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                weight += module.get_delta_weight(adapter).to(weight.dtype).to(weight.device)
        state_dict[f"{name}.weight"] = weight
        bias_key = f"{name}.base_layer.bias"
        if bias_key in state_dict:
            state_dict[f"{name}.bias"] = state_dict.pop(bias_key)
    return {k: v for k, v in state_dict.items() if "lora_" not in k}


def load_merged_into_lora(model: nn.Module, checkpoint_dir: str) -> None:
    """Resume a LoRA run: load every weight of a merged checkpoint that is not inside a LoRA layer.

    A LoRA layer's merged weight (``x.weight``) is not a name of the model (``x.base_layer.weight``), so it is
    skipped: base weights never change under LoRA and stay as built. Everything else loads, the LLM included (it
    may train in full while the LoRA sits on the adapter); the LoRA tensors come from
    ``lora_training_state.safetensors``.
    """
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(checkpoint_dir) if f.endswith(".safetensors") and f.startswith("model"))
    if not files:
        raise ValueError(f"no model*.safetensors in {checkpoint_dir}")
    own = model.state_dict()
    for file in files:
        tensors = load_file(os.path.join(checkpoint_dir, file))
        keep = {k: v for k, v in tensors.items() if k in own}
        model.load_state_dict(keep, strict=False)


def export_self_contained(model: nn.Module, processor, output_dir: str) -> None:
    """Check a saved folder is loadable on its own (config auto_map, remote code, processor); fill gaps."""
    config_path = os.path.join(output_dir, "config.json")
    if not os.path.exists(config_path):
        return
    with open(config_path) as f:
        config = json.load(f)
    auto_map = config.get("auto_map") or {}
    missing = [k for k in ("AutoConfig", "AutoModel") if k not in auto_map]
    code_files = [f for f in ("configuration_salad.py", "modeling_salad.py") if
                  not os.path.exists(os.path.join(output_dir, f))]
    if missing or code_files:
        raise ValueError(f"saved checkpoint {output_dir} is not self-contained: missing auto_map {missing}, "
                         f"files {code_files}; the model's save_pretrained must write its remote code")


def _staging_path(target: Path) -> Path:
    """One name every process agrees on (hidden: Trainer's checkpoint search and salad-publish skip it)."""
    return target.with_name(f".{target.name}.staging")


def save_folder_staged(trainer, target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """``write(folder)`` on every process into a staging folder beside ``target``; the main process then moves
    the finished folder to ``target`` (replacing an older one)."""
    from spans.files import replace_dir

    target = Path(target)
    staging = _staging_path(target)
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)  # what a killed save left behind
    trainer.accelerator.wait_for_everyone()
    write(staging)
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        replace_dir(staging, target)
    trainer.accelerator.wait_for_everyone()
    return target


def save_checkpoint_staged(trainer, run_dir: str, save_checkpoint: Callable[[], None]) -> None:
    """Run Trainer's own ``_save_checkpoint`` (``save_checkpoint``) with a staging folder as its run folder, move
    the ``checkpoint-N`` it wrote into ``run_dir``, then rotate the old checkpoints of ``run_dir``."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

    from spans.files import replace_dir

    name = f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
    staging = _staging_path(Path(run_dir) / name)
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.staging_run_dir = str(staging)
    try:
        save_checkpoint()
    finally:
        trainer.staging_run_dir = None
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        replace_dir(staging / name, Path(run_dir) / name)
        shutil.rmtree(staging, ignore_errors=True)
        best = trainer.state.best_model_checkpoint
        if best and Path(best).parent == staging:
            trainer.state.best_model_checkpoint = str(Path(run_dir) / Path(best).name)
        rotate_checkpoints(output_dir=run_dir, save_total_limit=trainer.args.save_total_limit,
                           best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=True)
    trainer.accelerator.wait_for_everyone()


def check_resume_schedule(checkpoint_dir: str | os.PathLike, max_steps: int) -> None:
    """Refuse to resume ``checkpoint_dir`` with another ``max_steps``: the restored scheduler (scheduler.pt) keeps
    the schedule of the old length, so the learning rate would not follow the new one (e.g. 0 after the old end)."""
    state_path = Path(checkpoint_dir) / "trainer_state.json"
    if max_steps <= 0 or not state_path.is_file():
        return
    saved = json.loads(state_path.read_text()).get("max_steps")
    if saved and saved != max_steps:
        raise ValueError(
            f"{checkpoint_dir} belongs to a run of max_steps={saved}; resuming it with max_steps={max_steps} would "
            f"keep the old learning-rate schedule. Resume with --max_steps {saved}, or start a new run from its "
            "weights (--model_name_or_path) without --resume_from_checkpoint.")
