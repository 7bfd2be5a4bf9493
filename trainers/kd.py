"""What the distillation loss reads from a model: final hidden states or logits at chosen positions, and the head.

The trainer's default (``kd_implementation="fused"``) asks the student and the teacher for their final hidden
states at the distilled positions and lets :func:`trainers.losses.fused_salad_objective` apply the LM heads chunk
by chunk; :func:`logits_at_positions` is the materialized form (diagnostics, ``kd_implementation="materialized"``).
Both go through the module's own ``forward`` (so DDP/FSDP wrappers, LoRA switches and the SALAD audio merge all
apply) and keep the LM head off every position that is not asked for.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["hidden_at_positions", "logits_at_positions", "output_head_weight"]

# Config fields that make the logits more than ``hidden @ lm_head.weight.T`` (Gemma, Cohere, Granite, ...).
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def logits_at_positions(module, positions: torch.Tensor, **inputs) -> torch.Tensor:
    """Run ``module(**inputs)`` computing logits only at the needed positions.

    positions: long [B, K] indices into the sequence (padded entries may hold any valid index).
    Returns [B, K, V]: row b, entry k = logits at position ``positions[b, k]`` of sequence b.
    """
    return module(**inputs, logits_to_keep=positions).logits


def hidden_at_positions(module, positions: torch.Tensor, **inputs) -> torch.Tensor:
    """The final hidden states (after the last norm: what the LM head reads) at ``positions``.

    positions: long [B, K]. Returns [B, K, D]. The forward keeps no position for the LM head, so no logits are
    computed; the last entry of ``hidden_states`` is the normed ``last_hidden_state`` in transformers 5.
    """
    no_position = torch.empty(0, dtype=torch.long, device=positions.device)
    outputs = module(**inputs, output_hidden_states=True, logits_to_keep=no_position)
    hidden = outputs.hidden_states[-1]
    del outputs  # the per-layer states are not kept alive beyond this call
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def output_head_weight(module: nn.Module) -> torch.Tensor:
    """The LM head's weight [V, D] of a causal LM whose logits are exactly ``hidden @ weight.T``.

    Raises ValueError when the head is not a bias-free ``nn.Linear`` (e.g. LoRA on the head) or the model
    transforms its logits: the fused loss would then differ from the model's logits.
    """
    head = module.get_output_embeddings()
    if type(head) is not nn.Linear or head.bias is not None:
        raise ValueError(f"the fused distillation loss needs a bias-free nn.Linear LM head, got "
                         f"{type(head).__name__}{' with a bias' if getattr(head, 'bias', None) is not None else ''}; "
                         "use kd_implementation='materialized'")
    config = getattr(module, "config", None)
    configs = [config, getattr(config, "text_config", None)]
    for name in _LOGIT_TRANSFORMS:
        if any(getattr(c, name, None) not in (None, 1, 1.0) for c in configs if c is not None):
            raise ValueError(f"the model's config sets {name}, which the fused distillation loss does not apply; "
                             "use kd_implementation='materialized'")
    return head.weight
