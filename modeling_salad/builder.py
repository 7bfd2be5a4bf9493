"""`build_salad`: assemble a SALAD model + processor from a pretrained text LLM and a pretrained speech encoder.

Not part of the Hub remote code (it is only needed to create a new model, not to load one).
"""

import copy
import os

import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    EncodecFeatureExtractor,
    WhisperFeatureExtractor,
)

from .configuration_salad import SaladConfig
from .modeling_salad import SaladForCausalLM, build_projector
from .processing_salad import AUDIO_TOKEN, SaladProcessor, audio_chat_template

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
)


def add_audio_token(tokenizer, audio_token: str = AUDIO_TOKEN) -> int:
    """Add `audio_token` as a special token (no-op when present); return its id."""
    if audio_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [audio_token]}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(audio_token)


def vocabulary_bridge(whisper_tokenizer, llm_tokenizer, vocab_size: int, max_pieces: int = 4):
    """For every Whisper token id: the LLM token ids of its text (at most `max_pieces`) and their count.

    Special tokens (and ids past the Whisper tokenizer) map to nothing (count 0).
    """
    special = set(whisper_tokenizer.all_special_ids)
    texts = [whisper_tokenizer.decode([i]) if i < len(whisper_tokenizer) and i not in special else ""
             for i in range(vocab_size)]
    encoded = llm_tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = torch.zeros(vocab_size, max_pieces, dtype=torch.long)
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for i, pieces in enumerate(encoded):
        pieces = pieces[:max_pieces]
        ids[i, : len(pieces)] = torch.tensor(pieces, dtype=torch.long)
        counts[i] = len(pieces)
    return ids, counts


def _load_audio_tower(audio_encoder, audio_config, dtype, keep_decoder: bool = False):
    """The encoder module of a WhisperModel/WhisperForConditionalGeneration or MimiModel folder, pretrained
    (the whole `WhisperModel` when `keep_decoder`, for the transcript adapter)."""
    full = AutoModel.from_pretrained(audio_encoder, dtype=dtype)
    if keep_decoder:
        return full.model if hasattr(full, "model") and not hasattr(full, "encoder") else full
    if audio_config.model_type == "whisper":
        return full.get_encoder() if hasattr(full, "get_encoder") else full.encoder
    return full.encoder


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
        slot_states=config.adapter_type in ("transcript", "posterior"),
        state_prefix_rows=config.audio_config.max_source_positions if config.adapter_type == "posterior" else 0,
        audio_padding=config.audio_padding,
        max_audio_seconds=config.max_audio_seconds,
        mimi_frame_samples=mimi_frame_samples,
    )


def build_salad(text_model, audio_encoder, dtype=torch.float32, **adapter_kwargs):
    """Build `(SaladForCausalLM, SaladProcessor)` from a causal-LM folder/Hub id (with tokenizer) and a Whisper
    (WhisperModel / WhisperForConditionalGeneration + feature extractor) or Mimi folder/Hub id.

    Adds `<|audio|>` to the tokenizer, resizes the LLM embeddings, records `base_text_model`, loads the pretrained
    LLM and encoder weights; the adapter is freshly initialized. `adapter_kwargs` go to `SaladConfig`.
    """
    unknown = set(adapter_kwargs) - set(ADAPTER_KWARGS)
    if unknown:
        raise ValueError(f"Unknown build_salad arguments {sorted(unknown)}; allowed: {ADAPTER_KWARGS}.")
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

    config = SaladConfig(
        text_config=language_model.config,
        audio_config=audio_config,
        audio_token_id=audio_token_id,
        base_text_model=str(text_model),
        **adapter_kwargs,
    )
    # Build the shell on the meta device and plug in the pretrained parts: no throwaway init of a second LLM.
    with torch.device("meta"):
        model = SaladForCausalLM(config)
    model.language_model = language_model
    bridged = config.adapter_type in ("transcript", "posterior")
    tower = _load_audio_tower(audio_encoder, audio_config, dtype, keep_decoder=bridged)
    model.audio_tower = tower.encoder if config.adapter_type == "posterior" else tower
    model.multi_modal_projector = build_projector(config).to(dtype)
    model.multi_modal_projector.apply(model._init_weights)
    if config.adapter_type == "posterior":  # the projector owns (and trains) the pretrained decoder
        model.multi_modal_projector.decoder.load_state_dict(tower.decoder.state_dict())
    if bridged:
        projector = model.multi_modal_projector
        projector.reset_correction()
        ids, counts = vocabulary_bridge(AutoTokenizer.from_pretrained(audio_encoder), tokenizer,
                                        audio_config.vocab_size, config.bridge_max_pieces)
        projector.bridge_ids.copy_(ids)
        projector.bridge_counts.copy_(counts)
    model.freeze_audio_tower()
    leftover = [name for name, p in model.named_parameters() if p.is_meta]
    if leftover:
        raise RuntimeError(f"build_salad left parameters on the meta device: {leftover[:5]}")
    model.generation_config = copy.deepcopy(language_model.generation_config)
    model.config.name_or_path = f"salad({os.path.basename(str(text_model))}+{os.path.basename(str(audio_encoder))})"
    return model.eval(), make_processor(tokenizer, feature_extractor, config)
