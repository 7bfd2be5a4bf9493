"""SALAD model: frozen speech encoder -> adapter -> text causal LM, merged by `masked_scatter` on `<|audio|>`.

Dimension letters: N = audio chunks in the batch, T = encoder frames per chunk, C = encoder width,
D = LLM hidden size. The adapter is the projector class registered for `config.adapter_type` (`projectors.py`):
the model asks it for its audio tower, its precomputed input and its embeddings, and never tests the name.

Remote-code safe: only `from .x import Y` relative imports, optional dependencies imported inside functions,
no import-time side effects, public transformers API only.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .audio_encoder import whisper_encoder_frames
from .configuration_salad import SaladConfig
from .projectors import stack_frames  # noqa: F401  (part of this module's public surface)


@dataclass
class SaladCausalLMOutputWithPast(CausalLMOutputWithPast):
    r"""
    attention_mask (`[B, past + U]`): the mask the language model ran with, hidden audio slots zeroed; generation
        continues from it, so later tokens never attend to those slots either.
    position_ids (`[B, U]`): the positions it ran with, numbering only the attended tokens.
    """

    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None


def hide_from_attention(hidden: torch.Tensor, attention_mask: torch.Tensor | None, past_length: int):
    """`hidden [B, U]` (True = keep out of attention) -> `(attention_mask [B, past + U], position_ids [B, U])`:
    the given mask (all ones when None) with the hidden positions zeroed, and positions that count attended
    tokens only, so the visible tokens are numbered as if the hidden ones were not there (padding included)."""
    batch, length = hidden.shape
    if attention_mask is None:
        attention_mask = torch.ones(batch, past_length + length, dtype=torch.long, device=hidden.device)
    attention_mask = attention_mask.clone()
    attention_mask[:, -length:] = attention_mask[:, -length:] * (~hidden).to(attention_mask.dtype)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
    return attention_mask, position_ids


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
        projector = config.projector_class
        self.audio_tower = projector.build_audio_tower(config)
        self.multi_modal_projector = projector(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.freeze_audio_tower()
        self.post_init()
        self.multi_modal_projector.after_init_weights()

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
        """Full-weight safetensors + the remote-code files + `auto_map` for the Auto classes, and a generation config
        that suppresses `<|audio|>`."""
        self.suppress_audio_token()
        type(self.config).register_for_auto_class()
        type(self).register_for_auto_class("AutoModelForCausalLM")
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.update(
            {
                "AutoConfig": "configuration_salad.SaladConfig",
                "AutoModel": "modeling_salad.SaladForCausalLM",
                "AutoModelForCausalLM": "modeling_salad.SaladForCausalLM",
                # what `pipeline("any-to-any")` loads
                "AutoModelForMultimodalLM": "modeling_salad.SaladForCausalLM",
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
    def audio_encoder(self) -> nn.Module:
        """The speech encoder inside `audio_tower` (the tower may hold more, e.g. Whisper's decoder)."""
        return self.config.projector_class.audio_encoder(self.audio_tower)

    def _encode_whisper(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        tower = self.audio_encoder
        mel_mask = input_features_mask.bool()
        features = input_features.to(tower.dtype)
        if self.config.audio_padding == "window":
            window = tower.config.max_source_positions * 2
            if features.shape[-1] != window:
                raise ValueError(
                    f"audio_padding='window' needs input_features of {window} mel frames, got {features.shape[-1]}; "
                    "use the SaladProcessor of this model (or set audio_padding='none')."
                )
            states = tower(features).last_hidden_state
        else:
            states = tower(features, attention_mask=mel_mask).last_hidden_state
        out_lengths = whisper_encoder_frames(mel_mask.sum(-1))
        frame_mask = torch.arange(states.shape[1], device=states.device)[None, :] < out_lengths[:, None]
        return states, frame_mask

    def _encode_mimi(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        tower = self.audio_encoder
        sample_mask = input_features_mask.bool()
        if input_features.dim() == 2:
            input_features = input_features[:, None, :]
        waveform = input_features * sample_mask[:, None, :].to(input_features.dtype)
        latents = tower(waveform.to(next(tower.parameters()).dtype), padding_mask=sample_mask.long()).latents
        states = latents.transpose(1, 2)
        lengths = tower.get_encoded_length(sample_mask.sum(-1)).to(states.device)
        frame_mask = torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]
        return states, frame_mask

    def encode_frames(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        """The speech encoder alone: `(states [N, T, C], frame_mask [N, T])`, True on the frames of real audio."""
        input_features_mask = self._check_audio_pair(
            input_features, input_features_mask, ("input_features", "input_features_mask")
        )
        with torch.set_grad_enabled(self._audio_tower_needs_grad()):
            if self.config.audio_encoder_type == "whisper":
                return self._encode_whisper(input_features, input_features_mask)
            return self._encode_mimi(input_features, input_features_mask)

    def _audio_tower_needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.audio_tower.parameters())

    def precompute_from_frames(self, states: torch.Tensor, frame_mask: torch.Tensor):
        """The projector's precompute step on `encode_frames` outputs (the part of `encode_audio` after the
        encoder): caches that keep encoder frames call it when only the projector changed."""
        with torch.set_grad_enabled(self._audio_tower_needs_grad()):
            return self.multi_modal_projector.precompute(states, frame_mask, self.audio_tower)

    def encode_audio(self, input_features: torch.Tensor, input_features_mask: torch.Tensor):
        """The frozen part: encoder, then the projector's precompute step. Returns `(states, mask)`, the
        precomputed input caches store (`projector.precomputed_input`), mask True on its real rows."""
        return self.precompute_from_frames(*self.encode_frames(input_features, input_features_mask))

    def get_audio_features(
        self,
        input_features=None,
        input_features_mask=None,
        audio_encoder_states=None,
        audio_encoder_mask=None,
    ) -> torch.Tensor:
        """Adapter outputs of the real frames only, flat in chunk order: `[sum of placeholders, D]`."""
        states, mask = self._audio_states(input_features, input_features_mask, audio_encoder_states,
                                          audio_encoder_mask)
        return self.multi_modal_projector.embed(states, mask, self.get_input_embeddings())

    def _audio_states(self, input_features, input_features_mask, audio_encoder_states, audio_encoder_mask):
        """The projector's precomputed input and mask: given, or computed from the audio features."""
        if audio_encoder_states is not None:
            audio_encoder_mask = self._check_audio_pair(
                audio_encoder_states, audio_encoder_mask, ("audio_encoder_states", "audio_encoder_mask")
            )
            return audio_encoder_states, audio_encoder_mask.bool()
        return self.encode_audio(input_features, input_features_mask)

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
                     audio_encoder_mask=None, inputs_embeds=None, labels=None, decoding_step=False):
        """The LLM's `inputs_embeds` `[B, U, D]` with each clip's audio embeddings at its `<|audio|>` placeholders
        (and `labels` with the placeholders ignored): what `forward` feeds the language model. Callers that need
        hidden states rather than logits run `get_decoder()` on it (with a projector that hides slots from
        attention, `forward` also adjusts the attention mask and positions; see `hide_from_attention`).

        Placeholders are checked only where audio is merged. On a `decoding_step` (a cached generation step, no
        audio) an `<|audio|>` the model generated is an ordinary token and keeps its own embedding."""
        inputs_embeds, labels, _ = self._merge_audio(input_ids, input_features, input_features_mask,
                                                     audio_encoder_states, audio_encoder_mask, inputs_embeds, labels,
                                                     decoding_step)
        return inputs_embeds, labels

    def _merge_audio(self, input_ids, input_features, input_features_mask, audio_encoder_states, audio_encoder_mask,
                     inputs_embeds, labels, decoding_step):
        """`embed_inputs`, plus `[B, U]` True on the placeholders the projector hides (None when it hides none)."""
        audio_id = self.config.audio_token_id
        merging = self._has_audio(input_features, audio_encoder_states)
        if inputs_embeds is None:
            is_placeholder = (input_ids == audio_id) if audio_id is not None else torch.zeros_like(input_ids).bool()
            if is_placeholder.any() and not merging and not decoding_step:
                raise ValueError(
                    f"input_ids hold {int(is_placeholder.sum())} `<|audio|>` placeholders but no audio was given "
                    "(`input_features` or `audio_encoder_states`)."
                )
            token_ids = input_ids.masked_fill(is_placeholder, 0) if merging else input_ids
            inputs_embeds = self.get_input_embeddings()(token_ids)
            if labels is not None:
                labels = labels.masked_fill(is_placeholder, -100)
        if not merging:
            return inputs_embeds, labels, None
        projector, visible = self.multi_modal_projector, None
        if projector.hides_slots:
            states, mask = self._audio_states(input_features, input_features_mask, audio_encoder_states,
                                              audio_encoder_mask)
            audio_features = projector.embed(states, mask, self.get_input_embeddings())
            visible = projector.visible_slots(states, mask)
        else:
            audio_features = self.get_audio_features(input_features, input_features_mask, audio_encoder_states,
                                                     audio_encoder_mask)
        audio_features = audio_features.to(inputs_embeds.dtype)
        placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds, audio_features)
        inputs_embeds = inputs_embeds.masked_scatter(placeholder_mask, audio_features)
        if visible is None:
            return inputs_embeds, labels, None
        hidden = torch.zeros(placeholder_mask.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
        hidden[placeholder_mask[..., 0]] = ~visible.to(hidden.device)
        return inputs_embeds, labels, hidden

    def suppress_audio_token(self, generation_config=None):
        """Add `<|audio|>` to `suppress_tokens` of the generation config: the model never writes a placeholder."""
        generation_config = generation_config if generation_config is not None else self.generation_config
        audio_id = self.config.audio_token_id
        suppressed = list(generation_config.suppress_tokens or [])
        if audio_id is not None and audio_id not in suppressed:
            generation_config.suppress_tokens = suppressed + [audio_id]
        return generation_config

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
        past_length = cache.get_seq_length() if cache is not None else 0
        inputs_embeds, labels, hidden = self._merge_audio(
            input_ids, input_features, input_features_mask, audio_encoder_states, audio_encoder_mask,
            inputs_embeds, labels, decoding_step=past_length > 0,
        )
        if hidden is not None:
            attention_mask, position_ids = hide_from_attention(hidden, attention_mask, past_length)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        if hidden is None:
            return outputs
        return SaladCausalLMOutputWithPast(**outputs, attention_mask=attention_mask, position_ids=position_ids)

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, *args, **kwargs):
        # Where the prefill hid audio slots, the following steps must keep them hidden and keep counting positions
        # from the visible tokens: continue from the mask and positions the prefill ran with (as Qwen2.5-Omni
        # carries its rope deltas from the prefill to the decoding steps).
        for name in ("attention_mask", "position_ids"):
            if getattr(outputs, name, None) is not None:
                model_kwargs[name] = getattr(outputs, name)
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)

    def prepare_inputs_for_generation(self, *args, is_first_iteration=False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        # Precomputed encoder states, like input_features, belong to the prefill step only.
        if not is_first_iteration and kwargs.get("use_cache", True):
            model_inputs.pop("audio_encoder_states", None)
            model_inputs.pop("audio_encoder_mask", None)
        return model_inputs
