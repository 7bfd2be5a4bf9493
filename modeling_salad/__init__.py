"""SALAD: speech understanding for a text LLM (frozen speech encoder -> adapter -> LLM).

The flat files `configuration_salad.py`, `modeling_salad.py`, `processing_salad.py`, `projectors.py` (the adapter
registry), `transcript_adapter.py`, `posterior_adapter.py` and `audio_encoder.py` are the Hub remote code copied
next to every saved checkpoint; `builder.py` assembles a new model from pretrained parts.
"""

from .audio_encoder import SaladWhisperEncoder
from .builder import build_salad
from .configuration_salad import SaladConfig
from .modeling_salad import SaladForCausalLM, SaladPreTrainedModel
from .processing_salad import SAMPLING_RATE, SaladProcessor, load_audio
from .projectors import PROJECTORS, SaladProjector, projector_class, register_projector

__all__ = ["PROJECTORS", "SAMPLING_RATE", "SaladConfig", "SaladForCausalLM", "SaladPreTrainedModel",
           "SaladProcessor", "SaladProjector", "SaladWhisperEncoder", "build_salad", "load_audio", "projector_class",
           "register_projector"]
