"""Load a SALAD model for evaluation and apps: a local folder or a Hub id.

The model class is always this package's `SaladForCausalLM`. The folder's remote code (the processor's `auto_map`)
runs only under `modeling_salad.loading`'s trust rule: its code is byte-identical to the installed modeling_salad,
or the user passed `trust_remote_code=True`. The base text LLM (for comparisons) is a plain `AutoModelForCausalLM`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def is_salad_checkpoint(path: str | os.PathLike) -> bool:
    """True when the local folder `path` holds a SALAD config (model_type "salad")."""
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("model_type") == "salad"


def resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; pass device=cpu.")
    return str(device)


def load_salad(pretrained: str | os.PathLike, device: str | None = None, dtype: str | None = None,
               trust_remote_code: bool = False):
    """`(SaladForCausalLM, SaladProcessor)` from a folder or Hub id, in eval mode on `device`.

    Raises ValueError naming the problem for a local folder that is not a SALAD checkpoint or a model that cannot
    be loaded (e.g. a Hub id while offline).
    """
    import torch

    from modeling_salad.loading import load_salad as load_under_trust_rule

    pretrained = str(pretrained)
    if os.path.isdir(pretrained) and not is_salad_checkpoint(pretrained):
        raise ValueError(f"{pretrained!r} is not a SALAD checkpoint (its config.json has no model_type 'salad').")
    torch_dtype = getattr(torch, dtype) if dtype and dtype != "auto" else dtype
    try:
        model, processor = load_under_trust_rule(pretrained, trust_remote_code, dtype=torch_dtype)
    except OSError as error:
        raise ValueError(f"Could not load the SALAD model {pretrained!r}: {error}") from None
    return model.to(resolve_device(device)).eval(), processor


def load_base_llm(name: str | os.PathLike, device: str | None = None):
    """`(AutoModelForCausalLM, tokenizer)` of the base text LLM, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(str(name))
        tokenizer = AutoTokenizer.from_pretrained(str(name))
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not load the base text LLM {str(name)!r}: {error}") from None
    return model.to(resolve_device(device)).eval(), tokenizer
