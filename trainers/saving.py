"""Self-contained checkpoints when the LLM carries injected LoRA layers (trainable='adapter+lora').

Checkpoints always hold plain full weights (LoRA merged in), so ``AutoModel.from_pretrained(dir,
trust_remote_code=True)`` loads them; the raw LoRA tensors go to ``lora_training_state.safetensors`` for resuming.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

__all__ = ["lora_modules", "merged_state_dict", "load_merged_into_lora", "export_self_contained"]


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
    """Resume a LoRA run: load every non-LLM weight (adapter, encoder) from a merged checkpoint.

    The LLM's base weights never change under LoRA, so they stay as built; the LoRA tensors are loaded
    separately from ``lora_training_state.safetensors``.
    """
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(checkpoint_dir) if f.endswith(".safetensors") and f.startswith("model"))
    if not files:
        raise ValueError(f"no model*.safetensors in {checkpoint_dir}")
    own = model.state_dict()
    for file in files:
        tensors = load_file(os.path.join(checkpoint_dir, file))
        keep = {k: v for k, v in tensors.items() if not k.startswith("language_model.") and k in own}
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
