"""SALAD model: frozen speech encoder -> adapter -> text causal LM, merged by `masked_scatter` on `<|audio|>`.

Dimension letters: N = audio chunks in the batch, T = encoder frames per chunk, C = encoder width,
S = stack factor, T' = ceil(T / S) adapter tokens per chunk, A = adapter width, D = LLM hidden size.

Remote-code safe: only `from .x import Y` relative imports, optional dependencies imported inside functions,
no import-time side effects, public transformers API only.
"""

import math

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    GenerationMixin,
    LlamaConfig,
    LlamaModel,
    PreTrainedModel,
    WhisperModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .configuration_salad import SaladConfig
from .posterior_adapter import SaladPosteriorProjector
from .transcript_adapter import SaladTranscriptProjector, greedy_decode_slots, pack_slot_states, transcript_slots


def whisper_encoder_frames(num_mel_frames):
    """Encoder output frames for `num_mel_frames` log-mel frames (conv2 has stride 2). Works on ints and tensors."""
    return (num_mel_frames - 1) // 2 + 1


def stack_frames(states: torch.Tensor, mask: torch.Tensor, stack_factor: int):
    """Concatenate groups of `stack_factor` consecutive frames, using only the frames of the real length.

    Args:
        states: `[N, T, C]` encoder frames. mask: `[N, T]` bool, True on real frames (a prefix of each row).
    Returns:
        `([N, T', C*S], [N, T'])` where T' = ceil(T / S); a token is real iff its group holds a real frame.
        Frames past the real length are zeroed, so a batched chunk stacks exactly like the chunk alone.
    """
    num_chunks, num_frames, width = states.shape
    states = states * mask.unsqueeze(-1).to(states.dtype)
    pad = (-num_frames) % stack_factor
    if pad:
        states = nn.functional.pad(states, (0, 0, 0, pad))
        mask = nn.functional.pad(mask, (0, pad), value=False)
    num_tokens = states.shape[1] // stack_factor
    stacked = states.reshape(num_chunks, num_tokens, width * stack_factor)
    token_mask = mask.reshape(num_chunks, num_tokens, stack_factor).any(-1)
    return stacked, token_mask


class SaladRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        dtype = hidden_states.dtype
        hidden_states = hidden_states.float()
        hidden_states = hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * hidden_states.to(dtype)


class SwiGLU(nn.Module):
    """`[..., 2H] -> [..., H]`: silu(gate) * value, gate and value being the two halves of the input."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        value, gate = hidden_states.chunk(2, dim=-1)
        return nn.functional.silu(gate) * value


class SaladMLPProjector(nn.Module):
    """Ultravox-style projector: `[N, T', C*S]` -> RMSNorm -> Linear -> SwiGLU -> RMSNorm -> Linear -> `[N, T', D]`."""

    def __init__(self, config: SaladConfig):
        super().__init__()
        in_size = config.audio_hidden_size * config.stack_factor
        hidden = config.adapter_hidden_size
        self.ln_pre = SaladRMSNorm(in_size)
        self.linear_1 = nn.Linear(in_size, hidden, bias=False)
        self.act = SwiGLU()
        self.ln_mid = SaladRMSNorm(hidden // 2)
        self.linear_2 = nn.Linear(hidden // 2, config.text_config.hidden_size, bias=False)

    def forward(self, stacked: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.linear_1(self.ln_pre(stacked)))
        return self.linear_2(self.ln_mid(hidden))


class SaladTransformerProjector(nn.Module):
    """Causal transformer adapter: `[N, T', C*S]` -> Linear -> Llama-style decoder stack -> Linear -> `[N, T', D]`.

    Causal attention keeps every real token independent of the padding that follows it in a batch.
    """

    def __init__(self, config: SaladConfig):
        super().__init__()
        in_size = config.audio_hidden_size * config.stack_factor
        width = config.adapter_hidden_size
        self.linear_in = nn.Linear(in_size, width, bias=False)
        stack_config = LlamaConfig(
            vocab_size=1,
            hidden_size=width,
            intermediate_size=config.adapter_intermediate_size,
            num_hidden_layers=config.adapter_num_layers,
            num_attention_heads=config.adapter_num_attention_heads,
            num_key_value_heads=getattr(config, "adapter_num_key_value_heads", config.adapter_num_attention_heads),
            max_position_embeddings=4096,
            initializer_range=getattr(config.text_config, "initializer_range", 0.02),
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )
        stack_config._attn_implementation = "sdpa"
        self.decoder = LlamaModel(stack_config)
        # The stack is fed embeddings only; its 1-row token table is never used.
        self.decoder.embed_tokens.weight.requires_grad_(False)
        self.linear_out = nn.Linear(width, config.text_config.hidden_size, bias=False)

    def forward(self, stacked: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.linear_in(stacked)
        hidden = self.decoder(inputs_embeds=hidden, attention_mask=token_mask.long(), use_cache=False).last_hidden_state
        return self.linear_out(hidden)


def build_projector(config: SaladConfig) -> nn.Module:
    if config.adapter_type == "transcript":
        return SaladTranscriptProjector(config)
    if config.adapter_type == "posterior":
        return SaladPosteriorProjector(config)
    return SaladTransformerProjector(config) if config.adapter_type == "transformer" else SaladMLPProjector(config)


def build_audio_tower(config: SaladConfig) -> nn.Module:
    if config.adapter_type == "transcript":  # the decoder reads the clip too
        return WhisperModel(config.audio_config)
    if config.audio_encoder_type == "whisper":
        return WhisperEncoder(config.audio_config)
    return AutoModel.from_config(config.audio_config.encoder_config)


class SaladPreTrainedModel(PreTrainedModel):
    config_class = SaladConfig
    config: SaladConfig
    base_model_prefix = "model"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["past_key_values", "cache"]


class SaladForCausalLM(SaladPreTrainedModel, GenerationMixin):
    """Speech-aware causal LM: `audio_tower` (frozen) -> `multi_modal_projector` -> `language_model`."""

    _tied_weights_keys = None

    def __init__(self, config: SaladConfig):
        super().__init__(config)
        self.audio_tower = build_audio_tower(config)
        self.multi_modal_projector = build_projector(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.freeze_audio_tower()
        self.post_init()
        if config.adapter_type in ("transcript", "posterior"):
            self.multi_modal_projector.reset_correction()

    # ----------------------------------------------------------------- plumbing
    def freeze_audio_tower(self):
        self.audio_tower.requires_grad_(False)

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings):
        self.language_model.set_output_embeddings(new_embeddings)

    def get_decoder(self):
        return self.language_model.get_decoder()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`; a bitsandbytes `quantization_config` quantizes the LLM only."""
        quantization_config = kwargs.get("quantization_config")
        if quantization_config is not None and hasattr(quantization_config, "llm_int8_skip_modules"):
            skip = list(quantization_config.llm_int8_skip_modules or [])
            for name in ("audio_tower", "multi_modal_projector", "lm_head"):
                if name not in skip:
                    skip.append(name)
            quantization_config.llm_int8_skip_modules = skip
        return super().from_pretrained(*args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Full-weight safetensors + the remote-code files + `auto_map` for AutoConfig/AutoModel/AutoModelForCausalLM."""
        type(self.config).register_for_auto_class()
        type(self).register_for_auto_class("AutoModelForCausalLM")
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.update(
            {
                "AutoConfig": "configuration_salad.SaladConfig",
                "AutoModel": "modeling_salad.SaladForCausalLM",
                "AutoModelForCausalLM": "modeling_salad.SaladForCausalLM",
            }
        )
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    # ----------------------------------------------------------------- audio path
    def _check_audio_pair(self, values, mask, names):
        """Validate a (values, mask) pair; a missing mask means every frame/sample is real."""
        if values is None:
            raise ValueError(f"`{names[0]}` is required.")
        if mask is None:
            return torch.ones(values.shape[0], values.shape[-1] if names[0] == "input_features" else values.shape[1],
                              dtype=torch.long, device=values.device)
        if values.shape[0] != mask.shape[0]:
            raise ValueError(f"`{names[0]}` has {values.shape[0]} chunks but `{names[1]}` has {mask.shape[0]}.")
        return mask

    @property
    def whisper_encoder(self) -> nn.Module:
        return self.audio_tower.encoder if self.config.adapter_type == "transcript" else self.audio_tower

    def _encode_whisper(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        tower = self.whisper_encoder
        mel_mask = input_features_mask.bool()
        out_lengths = whisper_encoder_frames(mel_mask.sum(-1))
        features = input_features.to(tower.conv1.weight.dtype)
        if self.config.audio_padding == "window":
            window = tower.config.max_source_positions * 2
            if features.shape[-1] != window:
                raise ValueError(
                    f"audio_padding='window' needs input_features of {window} mel frames, got {features.shape[-1]}; "
                    "use the SaladProcessor of this model (or set audio_padding='none')."
                )
            states = tower(features).last_hidden_state
        else:
            states = self._run_whisper_unpadded(features, mel_mask, out_lengths)
        frame_mask = torch.arange(states.shape[1], device=states.device)[None, :] < out_lengths[:, None]
        return states, frame_mask

    def _run_whisper_unpadded(self, features, mel_mask, out_lengths):
        """Whisper encoder on the real length: zero padding like a lone chunk, key-padding mask in attention."""
        tower = self.whisper_encoder
        keep = mel_mask[:, None, :].to(features.dtype)
        hidden = nn.functional.gelu(tower.conv1(features * keep)) * keep
        hidden = nn.functional.gelu(tower.conv2(hidden)).permute(0, 2, 1)
        num_frames = hidden.shape[1]
        if num_frames > tower.config.max_source_positions:
            raise ValueError(
                f"A chunk has {num_frames} encoder frames, more than the encoder's "
                f"{tower.config.max_source_positions}; chunk long audio with SaladProcessor."
            )
        hidden = hidden + tower.embed_positions.weight[:num_frames].to(hidden.dtype)
        frame_mask = torch.arange(num_frames, device=hidden.device)[None, :] < out_lengths[:, None]
        attention_mask = torch.zeros(hidden.shape[0], 1, num_frames, num_frames, dtype=hidden.dtype, device=hidden.device)
        attention_mask = attention_mask.masked_fill(~frame_mask[:, None, None, :], torch.finfo(hidden.dtype).min)
        for layer in tower.layers:
            hidden = layer(hidden, attention_mask)
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        return tower.layer_norm(hidden)

    def _encode_mimi(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        tower = self.audio_tower
        sample_mask = input_features_mask.bool()
        if input_features.dim() == 2:
            input_features = input_features[:, None, :]
        waveform = input_features * sample_mask[:, None, :].to(input_features.dtype)
        latents = tower(waveform.to(next(tower.parameters()).dtype), padding_mask=sample_mask.long()).latents
        states = latents.transpose(1, 2)
        lengths = tower.get_encoded_length(sample_mask.sum(-1)).to(states.device)
        frame_mask = torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]
        return states, frame_mask

    def encode_audio(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        """Frozen encoder only. Returns `(states [N, T, C], mask [N, T])`, mask True on frames of the real length."""
        input_features_mask = self._check_audio_pair(
            input_features, input_features_mask, ("input_features", "input_features_mask")
        )
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.audio_tower.parameters())
        with torch.set_grad_enabled(needs_grad):
            if self.config.adapter_type == "transcript":
                return self._transcribe_slots(input_features, input_features_mask)
            if self.config.adapter_type == "posterior":
                return self.multi_modal_projector.precompute(*self._encode_whisper(input_features, input_features_mask))
            if self.config.audio_encoder_type == "whisper":
                return self._encode_whisper(input_features, input_features_mask)
            return self._encode_mimi(input_features, input_features_mask)

    def _transcribe_slots(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        """Transcript adapter: slot states `[N, S, C + 1]` (decoder state + token id + 1) and slot mask `[N, S]`."""
        states, frame_mask = self._encode_whisper(input_features, input_features_mask)
        config = self.config
        max_slots = config.audio_config.max_target_positions - len(config.transcript_prompt_ids)
        num_slots = transcript_slots(frame_mask.sum(-1), config.stack_factor, max_slots)
        hidden, token_ids = greedy_decode_slots(self.audio_tower, states, num_slots, config.transcript_prompt_ids,
                                                config.audio_config.eos_token_id)
        slot_mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < num_slots[:, None]
        return pack_slot_states(hidden, token_ids), slot_mask

    def get_audio_features(
        self,
        input_features=None,
        input_features_mask=None,
        audio_encoder_states=None,
        audio_encoder_mask=None,
    ) -> torch.Tensor:
        """Adapter outputs of the real frames only, flat in chunk order: `[sum of placeholders, D]`."""
        if audio_encoder_states is not None:
            audio_encoder_mask = self._check_audio_pair(
                audio_encoder_states, audio_encoder_mask, ("audio_encoder_states", "audio_encoder_mask")
            )
            states, frame_mask = audio_encoder_states, audio_encoder_mask.bool()
        else:
            states, frame_mask = self.encode_audio(input_features, input_features_mask)
        if self.config.adapter_type == "posterior":
            projector = self.multi_modal_projector
            return projector(states, frame_mask, self.get_input_embeddings())[projector.slot_mask(frame_mask)]
        if self.config.adapter_type == "transcript":  # slot states are already one row per placeholder
            slot_mask = frame_mask.bool()
            return self.multi_modal_projector(states, slot_mask, self.get_input_embeddings())[slot_mask]
        projector_dtype = next(self.multi_modal_projector.parameters()).dtype
        stacked, token_mask = stack_frames(states.to(projector_dtype), frame_mask, self.config.stack_factor)
        projected = self.multi_modal_projector(stacked, token_mask)
        return projected[token_mask]

    def get_placeholder_mask(self, input_ids, inputs_embeds, audio_features) -> torch.Tensor:
        """Bool mask `[B, L, D]` of the placeholder positions; ValueError when their count differs from the features."""
        if input_ids is None:
            audio_embedding = self.get_input_embeddings()(
                torch.tensor(self.config.audio_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            placeholder = (inputs_embeds == audio_embedding).all(-1)
        else:
            placeholder = input_ids == self.config.audio_token_id
        num_placeholders = int(placeholder.sum())
        num_features = int(audio_features.shape[0])
        if num_placeholders != num_features:
            raise ValueError(
                f"Audio placeholders and audio features do not match: {num_placeholders} `<|audio|>` tokens in the "
                f"text, {num_features} audio embeddings. Build inputs with SaladProcessor, which expands each "
                "placeholder to the clip's embedding count."
            )
        return placeholder.unsqueeze(-1).expand_as(inputs_embeds).to(inputs_embeds.device)

    def _has_audio(self, input_features, audio_encoder_states) -> bool:
        return input_features is not None or audio_encoder_states is not None

    def embed_inputs(self, input_ids=None, input_features=None, input_features_mask=None, audio_encoder_states=None,
                     audio_encoder_mask=None, inputs_embeds=None, labels=None):
        """The LLM's `inputs_embeds` `[B, U, D]` with each clip's audio embeddings at its `<|audio|>` placeholders
        (and `labels` with the placeholders ignored): what `forward` feeds the language model. Callers that need
        hidden states rather than logits run `get_decoder()` on it."""
        audio_id = self.config.audio_token_id
        if inputs_embeds is None:
            is_placeholder = input_ids == audio_id if audio_id is not None else torch.zeros_like(input_ids, dtype=torch.bool)
            if is_placeholder.any() and not self._has_audio(input_features, audio_encoder_states):
                raise ValueError(
                    f"input_ids hold {int(is_placeholder.sum())} `<|audio|>` placeholders but no audio was given "
                    "(`input_features` or `audio_encoder_states`)."
                )
            inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(is_placeholder, 0))
            if labels is not None:
                labels = labels.masked_fill(is_placeholder, -100)
        if self._has_audio(input_features, audio_encoder_states):
            audio_features = self.get_audio_features(
                input_features, input_features_mask, audio_encoder_states, audio_encoder_mask
            ).to(inputs_embeds.dtype)
            placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds, audio_features)
            inputs_embeds = inputs_embeds.masked_scatter(placeholder_mask, audio_features)
        return inputs_embeds, labels

    # ----------------------------------------------------------------- forward / generate
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        input_features=None,
        input_features_mask=None,
        audio_encoder_states=None,
        audio_encoder_mask=None,
        inputs_embeds=None,
        labels=None,
        position_ids=None,
        cache=None,
        use_cache=None,
        logits_to_keep=0,
        **kwargs,
    ):
        r"""
        input_features (`[N, M, L]` log-mel for Whisper, `[N, 1, samples]` waveform for Mimi): audio chunks of the batch.
        input_features_mask (`[N, L]` / `[N, samples]`): 1 on the real part of each chunk.
        audio_encoder_states (`[N, T, C]`) + audio_encoder_mask (`[N, T]`): precomputed frozen-encoder outputs
            (an alternative to `input_features` that skips the encoder).
        """
        if cache is None and "past_key_values" in kwargs:
            cache = kwargs.pop("past_key_values")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        inputs_embeds, labels = self.embed_inputs(
            input_ids, input_features, input_features_mask, audio_encoder_states, audio_encoder_mask,
            inputs_embeds=inputs_embeds, labels=labels,
        )
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def prepare_inputs_for_generation(self, *args, is_first_iteration=False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        # Precomputed encoder states, like input_features, belong to the prefill step only.
        if not is_first_iteration and kwargs.get("use_cache", True):
            model_inputs.pop("audio_encoder_states", None)
            model_inputs.pop("audio_encoder_mask", None)
        return model_inputs


def num_tokens_for_frames(num_encoder_frames: int, stack_factor: int) -> int:
    """Adapter tokens (= placeholders) for a chunk with `num_encoder_frames` real encoder frames."""
    return math.ceil(num_encoder_frames / stack_factor)
