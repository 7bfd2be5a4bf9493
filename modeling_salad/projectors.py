"""Adapters (projectors) from the frozen speech encoder to the LLM's input embeddings, as a registry of classes.

One class per adapter type, registered under its `adapter_type` name (the value saved in `config.json`).
`SaladConfig`, `SaladForCausalLM` and `SaladProcessor` only ever ask the class found by `projector_class(name)`;
none of them tests the name. A class answers these questions:

* `configure(config)`: fill its defaults on the config (e.g. `stack_factor`) and reject settings it cannot run;
* `num_slots(num_encoder_frames, stack_factor)`: the `<|audio|>` placeholders of one chunk, known from the clip's
  length alone, so the processor expands the text before the model runs;
* `precomputed_input` / `precomputed_width(config)`: what `model.encode_audio` returns and caches store per chunk
  (`"encoder_frames"`: `[T, C]` encoder frames, stacked by the projector; `"slot_states"`: `[slots, W]`, one row
  per placeholder), and `slots_for_precomputed(num_rows, stack_factor)` to count placeholders from such rows;
* `build_audio_tower(config)` / `audio_encoder(tower)` / `precompute(...)` / `embed(...)`: the modules it reads
  and the two halves of its forward pass (frozen part, trainable part);
* `hides_slots` / `visible_slots(states, mask)`: which of its slots the LLM attends to (default: all).

Adding an adapter type means adding one class: subclass `SaladProjector` in this file or in a flat sibling file,
decorate it with `@register_projector`, and import that file from `configuration_salad.py` (every remote-code
module reaches the registry through the config module, so the class is registered wherever a SALAD model loads).
The builder hooks (`pretrained_config_fields`, `load_audio_tower`, `prepare_from_pretrained`) have defaults that
fit an adapter learned from scratch on encoder frames.

Dimension letters: N = chunks, T = encoder frames per chunk, C = encoder width, S = stack factor,
T' = ceil(T / S) adapter tokens per chunk, A = adapter width, D = LLM hidden size.
"""

import math
from typing import ClassVar

import torch
from torch import nn
from transformers import AutoModel, LlamaConfig, LlamaModel

from .audio_encoder import build_audio_encoder, pretrained_audio_encoder

PROJECTORS: dict[str, type["SaladProjector"]] = {}
PRECOMPUTED_KINDS = ("encoder_frames", "slot_states")


def register_projector(cls: type["SaladProjector"]) -> type["SaladProjector"]:
    """Class decorator: make `cls` the projector that `projector_class(cls.adapter_type)` returns."""
    if cls.precomputed_input not in PRECOMPUTED_KINDS:
        raise ValueError(f"{cls.__name__}.precomputed_input must be one of {PRECOMPUTED_KINDS}.")
    PROJECTORS[cls.adapter_type] = cls
    return cls


def projector_class(adapter_type: str) -> type["SaladProjector"]:
    """The registered projector class of `adapter_type`; ValueError naming the known types otherwise."""
    if adapter_type not in PROJECTORS:
        raise ValueError(f"adapter_type must be one of {tuple(PROJECTORS)}, got {adapter_type!r}.")
    return PROJECTORS[adapter_type]


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


class SaladProjector(nn.Module):
    """Base of every adapter. Defaults describe an adapter learned from scratch on stacked encoder frames."""

    adapter_type: ClassVar[str]
    precomputed_input: ClassVar[str] = "encoder_frames"
    # True when `precompute` runs this projector's own (trainable) weights, so cached precomputed inputs go stale
    # whenever the projector trains.
    precompute_uses_own_weights: ClassVar[bool] = False

    # ------------------------------------------------------------ what the config and the processor ask
    @classmethod
    def configure(cls, config) -> None:
        """Fill this adapter's defaults on `config` and raise ValueError on settings it cannot run."""
        if config.stack_factor is None:
            config.stack_factor = 1 if config.audio_encoder_type == "mimi" else 4

    @classmethod
    def num_slots(cls, num_encoder_frames: int, stack_factor: int) -> int:
        """Placeholders of one chunk with `num_encoder_frames` real encoder frames."""
        return math.ceil(num_encoder_frames / stack_factor)

    @classmethod
    def slots_for_precomputed(cls, num_rows: int, stack_factor: int) -> int:
        """Placeholders of one chunk given as `num_rows` real rows of its precomputed input."""
        if cls.precomputed_input == "slot_states":
            return int(num_rows)
        return cls.num_slots(num_rows, stack_factor)

    @classmethod
    def precomputed_width(cls, config) -> int:
        """Channels of one row of the precomputed input (`model.encode_audio` states)."""
        return config.audio_hidden_size

    # ------------------------------------------------------------ what the model asks
    @classmethod
    def build_audio_tower(cls, config) -> nn.Module:
        """The frozen module this adapter reads, randomly initialized (weights come from a checkpoint)."""
        return build_audio_encoder(config)

    @classmethod
    def audio_encoder(cls, audio_tower: nn.Module) -> nn.Module:
        """The speech encoder inside `audio_tower`."""
        return audio_tower

    def after_init_weights(self) -> None:
        """Called after the generic weight init of a new model: the state a fresh adapter starts from."""

    def precompute(self, encoder_states, frame_mask, audio_tower):
        """Frozen part: encoder output `([N, T, C], [N, T])` -> this adapter's precomputed input and its row mask."""
        return encoder_states, frame_mask

    def embed(self, states: torch.Tensor, mask: torch.Tensor, text_embeddings: nn.Module) -> torch.Tensor:
        """Trainable part: precomputed input `[N, T, C]` + mask -> flat embeddings `[sum of placeholders, D]`."""
        dtype = next(self.parameters()).dtype
        stacked, token_mask = stack_frames(states.to(dtype), mask.bool(), self.stack_factor)
        return self(stacked, token_mask)[token_mask]

    @property
    def hides_slots(self) -> bool:
        """Whether `visible_slots` may hide any slot (then the model asks it on every audio merge)."""
        return False

    def visible_slots(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Which of `embed`'s flat outputs the LLM attends to (`[sum of placeholders]` bool), or None for all.
        A hidden slot keeps its placeholder position but is masked out of attention and takes no position id."""
        return None

    # ------------------------------------------------------------ what the trainer asks
    def logged_scalars(self) -> dict[str, float]:
        """Learned one-number settings worth a line in the training logs (a temperature, a bias), by name."""
        return {}

    # ------------------------------------------------------------ what the builder asks
    @classmethod
    def pretrained_config_fields(cls, audio_encoder_path: str, audio_config) -> dict:
        """Config fields this adapter reads from the pretrained speech model (token ids and the like)."""
        return {}

    @classmethod
    def load_audio_tower(cls, audio_encoder_path: str, config, dtype) -> nn.Module:
        """The pretrained frozen module from a Whisper (WhisperModel / WhisperForConditionalGeneration) or Mimi
        folder, with the parameter names of `build_audio_tower`."""
        return pretrained_audio_encoder(AutoModel.from_pretrained(audio_encoder_path, dtype=dtype), config)

    def prepare_from_pretrained(self, text_tokenizer, audio_encoder_path: str, text_embeddings=None) -> None:
        """Fill buffers and start values that depend on the pretrained parts (e.g. a vocabulary map between the
        tokenizers; `text_embeddings` is the LLM's input embedding module)."""


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


@register_projector
class SaladMLPProjector(SaladProjector):
    """Ultravox-style projector: `[N, T', C*S]` -> RMSNorm -> Linear -> SwiGLU -> RMSNorm -> Linear -> `[N, T', D]`."""

    adapter_type = "mlp"

    def __init__(self, config):
        super().__init__()
        self.stack_factor = config.stack_factor
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


@register_projector
class SaladTransformerProjector(SaladProjector):
    """Causal transformer adapter: `[N, T', C*S]` -> Linear -> Llama-style decoder stack -> Linear -> `[N, T', D]`.

    Causal attention keeps every real token independent of the padding that follows it in a batch.
    """

    adapter_type = "transformer"

    def __init__(self, config):
        super().__init__()
        self.stack_factor = config.stack_factor
        in_size = config.audio_hidden_size * config.stack_factor
        width = config.adapter_hidden_size
        self.linear_in = nn.Linear(in_size, width, bias=False)
        stack_config = LlamaConfig(
            vocab_size=1,
            hidden_size=width,
            intermediate_size=config.adapter_intermediate_size,
            num_hidden_layers=config.adapter_num_layers,
            num_attention_heads=config.adapter_num_attention_heads,
            num_key_value_heads=config.adapter_num_key_value_heads,
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
