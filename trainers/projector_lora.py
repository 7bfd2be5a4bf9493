"""LoRA on the adapter (``projector_lora_r``): e.g. the Whisper decoder of ``adapter_type="posterior"``.

The adapter's linear layers get peft LoRA and their base weights freeze; the adapter's own parameters (those not
inside a submodule, such as the posterior temperature and filler) keep training in full. Checkpoints stay plain
SALAD folders: ``DistillationTrainer._save`` merges every LoRA layer of the model, this one's included.
"""

from __future__ import annotations

from torch import nn

from .saving import lora_modules

__all__ = ["apply_projector_lora", "default_projector_targets", "linear_layer_names"]


def linear_layer_names(module: nn.Module) -> list[str]:
    """Dotted names of the ``nn.Linear`` layers in ``module``."""
    return [name for name, child in module.named_modules() if isinstance(child, nn.Linear)]


def _matches(name: str, target: str) -> bool:
    """peft's rule for a list of target names: the full name or its last dotted parts."""
    return name == target or name.endswith(f".{target}")


def default_projector_targets(projector: nn.Module, r: int) -> list[str]:
    """Last names of the linear layers whose rank-``r`` LoRA is smaller than the layer itself."""
    names = {}
    for name, child in projector.named_modules():
        if isinstance(child, nn.Linear) and r * (child.in_features + child.out_features) < child.weight.numel():
            names[name.rsplit(".", 1)[-1]] = None
    return list(names)


def _check_targets(projector: nn.Module, targets: list[str], r: int) -> list[str]:
    layers = linear_layer_names(projector)
    if not targets:
        raise ValueError(f"projector_lora_r={r}: no linear layer of the adapter is wide enough for a rank-{r} LoRA "
                         f"(its linear layers: {sorted({n.rsplit('.', 1)[-1] for n in layers}) or 'none'}); "
                         "lower projector_lora_r or name projector_lora_target_modules")
    unmatched = [t for t in targets if not any(_matches(name, t) for name in layers)]
    if unmatched:
        known = sorted({n.rsplit(".", 1)[-1] for n in layers})
        raise ValueError(f"projector_lora_target_modules {unmatched} match no linear layer of the adapter; its "
                         f"linear layers are named {known} (e.g. {layers[:3]})")
    return targets


def _train_only_lora_and_own_parameters(projector: nn.Module) -> None:
    for name, param in projector.named_parameters():
        param.requires_grad_("lora_" in name)
    for param in projector.parameters(recurse=False):
        param.requires_grad_(True)


def apply_projector_lora(projector: nn.Module, r: int, alpha: float, targets: list[str] | None = None) -> None:
    """Wrap ``projector``'s linear layers (``targets``, default `default_projector_targets`) in rank-``r`` LoRA
    and set what trains: the LoRA matrices and the projector's own parameters. A projector that already holds
    LoRA layers (a trainer built twice on one model) keeps them."""
    if not lora_modules(projector):
        from peft import LoraConfig, inject_adapter_in_model

        targets = _check_targets(projector, list(targets) if targets is not None else
                                 default_projector_targets(projector, r), r)
        inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, target_modules=targets), projector)
    _train_only_lora_and_own_parameters(projector)
