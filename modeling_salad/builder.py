"""`build_salad`: assemble a SALAD model + processor from a pretrained text LLM and a pretrained speech encoder.

Not part of the Hub remote code (it is only needed to create a new model, not to load one). What is specific to
an adapter (config fields read from the speech model, the pretrained tower it reads, buffers built from the
tokenizers) comes from its projector class.
"""

import copy
import os

import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCausalLM,
    AutoTokenizer,
    EncodecFeatureExtractor,
    WhisperFeatureExtractor,
)

from .configuration_salad import SaladConfig
from .modeling_salad import SaladForCausalLM
from .processing_salad import AUDIO_TOKEN, SaladProcessor, audio_chat_template
from .projectors import projector_class
from .transcript_adapter import vocabulary_bridge  # noqa: F401  (kept importable from here)

ADAPTER_KWARGS = (
    "adapter_type",
    "adapter_num_layers",
    "adapter_hidden_size",
    "adapter_intermediate_size",
    "adapter_num_attention_heads",
    "stack_factor",
    "audio_padding",
    "max_audio_seconds",
    "adapter_num_key_value_heads",
    "bridge_max_pieces",
    "posterior_temperature",
    "posterior_top_k",
    "posterior_pieces",
    "posterior_fillers",
    "posterior_filler_text",
    "posterior_hide_fillers",
    "posterior_logit_bias",
    "posterior_piece_alignment",
    "posterior_training_temperature",
    "posterior_numeral_bias",
    "posterior_suppress_tokens",
)


def add_audio_token(tokenizer, audio_token: str = AUDIO_TOKEN) -> int:
    """Add `audio_token` as a special token (no-op when present); return its id."""
    if audio_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [audio_token]}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(audio_token)


def make_processor(tokenizer, feature_extractor, config: SaladConfig) -> SaladProcessor:
    chat_template = audio_chat_template(getattr(tokenizer, "chat_template", None))
    mimi_frame_samples = 1920
    if config.audio_encoder_type == "mimi":
        mimi_frame_samples = int(round(config.audio_config.sampling_rate / config.audio_config.frame_rate))
    return SaladProcessor(
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=chat_template,
        stack_factor=config.stack_factor,
        adapter_type=config.adapter_type,
        audio_padding=config.audio_padding,
        max_audio_seconds=config.max_audio_seconds,
        mimi_frame_samples=mimi_frame_samples,
    )


def _load_parts(text_model, audio_encoder, dtype):
    """Tokenizer (with `<|audio|>` and a pad token), LLM (embeddings resized), audio config, feature extractor."""
    tokenizer = AutoTokenizer.from_pretrained(text_model)
    audio_token_id = add_audio_token(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    language_model = AutoModelForCausalLM.from_pretrained(text_model, dtype=dtype)
    if audio_token_id >= language_model.get_input_embeddings().weight.shape[0]:
        language_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    audio_config = AutoConfig.from_pretrained(audio_encoder)
    if audio_config.model_type not in ("whisper", "mimi"):
        raise ValueError(f"{audio_encoder!r} is a {audio_config.model_type!r} model; expected Whisper or Mimi.")
    feature_extractor = AutoFeatureExtractor.from_pretrained(audio_encoder)
    expected = WhisperFeatureExtractor if audio_config.model_type == "whisper" else EncodecFeatureExtractor
    if not isinstance(feature_extractor, expected):
        raise ValueError(f"{audio_encoder!r} has a {type(feature_extractor).__name__}, expected {expected.__name__}.")
    return tokenizer, language_model, audio_config, feature_extractor


def build_salad(text_model, audio_encoder, dtype=torch.float32, **adapter_kwargs):
    """Build `(SaladForCausalLM, SaladProcessor)` from a causal-LM folder/Hub id (with tokenizer) and a Whisper
    (WhisperModel / WhisperForConditionalGeneration + feature extractor) or Mimi folder/Hub id.

    Adds `<|audio|>` to the tokenizer, resizes the LLM embeddings, records `base_text_model`, loads the pretrained
    LLM and encoder weights; the adapter is freshly initialized. `adapter_kwargs` go to `SaladConfig`.
    """
    unknown = set(adapter_kwargs) - set(ADAPTER_KWARGS)
    if unknown:
        raise ValueError(f"Unknown build_salad arguments {sorted(unknown)}; allowed: {ADAPTER_KWARGS}.")
    tokenizer, language_model, audio_config, feature_extractor = _load_parts(text_model, audio_encoder, dtype)
    projector = projector_class(adapter_kwargs.get("adapter_type", SaladConfig.adapter_type))
    config = SaladConfig(
        text_config=language_model.config,
        audio_config=audio_config,
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
        base_text_model=str(text_model),
        **{**projector.pretrained_config_fields(str(audio_encoder), audio_config), **adapter_kwargs},
    )
    # Build the shell on the meta device and plug in the pretrained parts: no throwaway init of a second LLM.
    with torch.device("meta"):
        model = SaladForCausalLM(config)
    model.language_model = language_model
    model.audio_tower = projector.load_audio_tower(str(audio_encoder), config, dtype)
    model.multi_modal_projector = projector(config).to(dtype)
    model.multi_modal_projector.apply(model._init_weights)
    model.multi_modal_projector.after_init_weights()
    model.multi_modal_projector.prepare_from_pretrained(tokenizer, str(audio_encoder),
                                                        language_model.get_input_embeddings())
    model.freeze_audio_tower()
    leftover = [name for name, p in model.named_parameters() if p.is_meta]
    if leftover:
        raise RuntimeError(f"build_salad left parameters on the meta device: {leftover[:5]}")
    model.generation_config = model.suppress_audio_token(copy.deepcopy(language_model.generation_config))
    model.config.name_or_path = f"salad({os.path.basename(str(text_model))}+{os.path.basename(str(audio_encoder))})"
    return model.eval(), make_processor(tokenizer, feature_extractor, config)
