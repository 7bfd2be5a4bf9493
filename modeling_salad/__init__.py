"""SALAD: speech understanding for a text LLM (frozen speech encoder -> adapter -> LLM).

The three flat files `configuration_salad.py`, `modeling_salad.py` and `processing_salad.py` are the Hub remote
code copied next to every saved checkpoint; `builder.py` assembles a new model from pretrained parts.
"""

from .builder import build_salad
from .configuration_salad import SaladConfig
from .modeling_salad import SaladForCausalLM, SaladPreTrainedModel
from .processing_salad import SAMPLING_RATE, SaladProcessor, load_audio

__all__ = ["SAMPLING_RATE", "SaladConfig", "SaladForCausalLM", "SaladPreTrainedModel", "SaladProcessor", "build_salad", "load_audio"]
