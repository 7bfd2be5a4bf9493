"""SALAD configuration: a text causal LM, a frozen speech encoder (Whisper encoder or Mimi) and an adapter.

Remote-code safe: only transformers' public API, no import-time side effects.
"""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

ADAPTER_TYPES = ("transformer", "mlp", "transcript", "posterior")
DECODER_ADAPTER_TYPES = ("transcript", "posterior")  # read the clip with Whisper's decoder
POSTERIOR_PIECE_MODES = ("mean", "first")
AUDIO_PADDING_MODES = ("window", "none")
SUPPORTED_AUDIO_MODEL_TYPES = ("whisper", "mimi")


def _as_config(value, default_model_type: str, name: str) -> PreTrainedConfig:
    if isinstance(value, PreTrainedConfig):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"`{name}` must be a dict or a PreTrainedConfig, got {type(value).__name__}.")
    value = dict(value)
    model_type = value.pop("model_type", default_model_type)
    return AutoConfig.for_model(model_type, **value)


class SaladConfig(PreTrainedConfig):
    r"""
    Configuration of [`SaladForCausalLM`].

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the causal language model (any `AutoModelForCausalLM` architecture; default: llama).
        audio_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the speech encoder: a `WhisperConfig` (its encoder is used, 50 frames/s) or a `MimiConfig`
            (its continuous pre-quantization latents are used, 12.5 frames/s).
        adapter_type (`str`, defaults to `"transformer"`):
            `"transformer"`: frame stacking, a linear input map and a small causal transformer (paper: 12 layers,
            width 960); `"mlp"`: frame stacking + RMSNorm + SwiGLU projector (Ultravox); `"transcript"` (Whisper
            only): Whisper's own decoder reads the clip greedily and each recognized token fills one slot with the
            LLM's embedding of its text plus a learned correction (see `transcript_adapter.py`); `stack_factor`
            then sets the slot rate (encoder frames per slot: 10 = 5 slots per second).
            `"posterior"` (Whisper only): the same slots, each the expected LLM embedding under Whisper's
            teacher-forced posterior over its vocabulary; differentiable, so training reaches the Whisper decoder
            (see `posterior_adapter.py`).
        adapter_num_layers (`int`, defaults to 12): Layers of the transformer adapter.
        adapter_hidden_size (`int`, defaults to 960): Width of the adapter.
        adapter_intermediate_size (`int`, *optional*): FFN width of the transformer adapter (default 2.4 x width).
        adapter_num_attention_heads (`int`, *optional*): Heads of the transformer adapter (default width // 64).
        stack_factor (`int`, *optional*):
            Encoder frames concatenated into one LLM embedding (default 4 for Whisper -> 12.5 Hz, 1 for Mimi).
        audio_token_id (`int`, *optional*): Id of the `<|audio|>` placeholder token in the LLM vocabulary.
        base_text_model (`str`, *optional*): Path or Hub id of the text LLM this model was built from.
        audio_padding (`str`, defaults to `"window"`):
            Whisper only. `"window"`: every chunk is padded to the encoder's 30 s window (as pretrained) and only
            the output frames of the real length are kept; `"none"`: the encoder runs on the real length only.
        max_audio_seconds (`float`, defaults to 600): Longest clip the processor accepts (longer raises).
        adapter_num_key_value_heads (`int`, *optional*): KV heads of the transformer adapter (paper: 5; default =
            attention heads).
        bridge_max_pieces (`int`, defaults to 4): Transcript adapter: LLM tokens averaged per Whisper token.
        transcript_prompt_ids (`list[int]`, *optional*): Transcript adapter: the Whisper decoder prompt (default:
            start-of-transcript + no-timestamps of an English-only Whisper).
        posterior_temperature (`float`, defaults to 1.0): Posterior front end (`adapter_type="posterior"`, see
            `posterior_adapter.py`): initial temperature of Whisper's slot posterior (learned); 0 = argmax mode
            (the greedy token's bridged embedding, the transcript adapter without correction).
        posterior_top_k (`int`, defaults to 16): Posterior front end: tokens kept per slot (the posterior is
            renormalized over them); 0 = the whole Whisper vocabulary.
        posterior_pieces (`str`, defaults to `"mean"`): Posterior front end: a Whisper token whose text is several
            LLM tokens gives their mean embedding (`"mean"`) or the first one (`"first"`).
    """

    model_type = "salad"
    # Declared so attention implementation and dtype choices reach both sub-models.
    sub_configs_defaults = {
        "text_config": SubConfigSpec(AutoConfig, model_type="llama"),
        "audio_config": SubConfigSpec(AutoConfig, model_type="whisper"),
    }

    def __init__(
        self,
        text_config=None,
        audio_config=None,
        adapter_type: str = "transformer",
        adapter_num_layers: int = 12,
        adapter_hidden_size: int = 960,
        adapter_intermediate_size: int | None = None,
        adapter_num_attention_heads: int | None = None,
        stack_factor: int | None = None,
        audio_token_id: int | None = None,
        base_text_model: str | None = None,
        audio_padding: str = "window",
        max_audio_seconds: float = 600.0,
        adapter_num_key_value_heads: int | None = None,
        bridge_max_pieces: int = 4,
        transcript_prompt_ids: list[int] | None = None,
        posterior_temperature: float = 1.0,
        posterior_top_k: int = 16,
        posterior_pieces: str = "mean",
        **kwargs,
    ):
        self.text_config = _as_config(text_config, "llama", "text_config")
        self.audio_config = _as_config(audio_config, "whisper", "audio_config")
        if self.audio_config.model_type not in SUPPORTED_AUDIO_MODEL_TYPES:
            raise ValueError(
                f"audio_config.model_type must be one of {SUPPORTED_AUDIO_MODEL_TYPES}, "
                f"got {self.audio_config.model_type!r}."
            )
        if adapter_type not in ADAPTER_TYPES:
            raise ValueError(f"adapter_type must be one of {ADAPTER_TYPES}, got {adapter_type!r}.")
        if audio_padding not in AUDIO_PADDING_MODES:
            raise ValueError(f"audio_padding must be one of {AUDIO_PADDING_MODES}, got {audio_padding!r}.")
        if adapter_type in DECODER_ADAPTER_TYPES:
            if self.audio_config.model_type != "whisper" or audio_padding != "window":
                raise ValueError(f"adapter_type={adapter_type!r} needs a Whisper audio_config and audio_padding='window' "
                                 "(Whisper's decoder reads the padded 30 s window it was trained on).")
            if stack_factor is None:
                stack_factor = 10
        if stack_factor is None:
            stack_factor = 1 if self.audio_config.model_type == "mimi" else 4
        if int(stack_factor) < 1:
            raise ValueError(f"stack_factor must be >= 1, got {stack_factor}.")
        if adapter_num_layers < 1 or adapter_hidden_size < 1:
            raise ValueError("adapter_num_layers and adapter_hidden_size must be positive.")
        self.adapter_type = adapter_type
        self.adapter_num_layers = int(adapter_num_layers)
        self.adapter_hidden_size = int(adapter_hidden_size)
        self.adapter_intermediate_size = (
            int(adapter_intermediate_size)
            if adapter_intermediate_size
            else max(64, int(round(2.4 * adapter_hidden_size / 64)) * 64)
        )
        self.adapter_num_attention_heads = int(adapter_num_attention_heads or max(1, adapter_hidden_size // 64))
        if self.adapter_hidden_size % self.adapter_num_attention_heads:
            raise ValueError("adapter_hidden_size must be divisible by adapter_num_attention_heads.")
        self.stack_factor = int(stack_factor)
        self.audio_token_id = audio_token_id
        self.base_text_model = base_text_model
        self.audio_padding = audio_padding
        self.max_audio_seconds = float(max_audio_seconds)
        self.adapter_num_key_value_heads = int(adapter_num_key_value_heads or self.adapter_num_attention_heads)
        if self.adapter_num_attention_heads % self.adapter_num_key_value_heads:
            raise ValueError("adapter_num_attention_heads must be divisible by adapter_num_key_value_heads.")
        if int(bridge_max_pieces) < 1:
            raise ValueError(f"bridge_max_pieces must be >= 1, got {bridge_max_pieces}.")
        self.bridge_max_pieces = int(bridge_max_pieces)
        if float(posterior_temperature) < 0 or int(posterior_top_k) < 0:
            raise ValueError("posterior_temperature and posterior_top_k must be >= 0.")
        if posterior_pieces not in POSTERIOR_PIECE_MODES:
            raise ValueError(f"posterior_pieces must be one of {POSTERIOR_PIECE_MODES}, got {posterior_pieces!r}.")
        self.posterior_temperature = float(posterior_temperature)
        self.posterior_top_k = int(posterior_top_k)
        self.posterior_pieces = posterior_pieces
        if transcript_prompt_ids is None and adapter_type in DECODER_ADAPTER_TYPES:
            start = getattr(self.audio_config, "decoder_start_token_id", 50257)
            transcript_prompt_ids = [start, 50362] if start == 50257 else [start, 50259, 50359, 50363]
        self.transcript_prompt_ids = list(transcript_prompt_ids) if transcript_prompt_ids else None
        if adapter_type in DECODER_ADAPTER_TYPES:
            most_slots = -(-self.audio_config.max_source_positions // self.stack_factor)
            room = self.audio_config.max_target_positions - len(self.transcript_prompt_ids)
            if most_slots > room:
                raise ValueError(f"stack_factor={self.stack_factor} gives {most_slots} slots per 30 s chunk, more "
                                 f"than the Whisper decoder can emit ({room}); raise stack_factor.")
        kwargs.setdefault("tie_word_embeddings", getattr(self.text_config, "tie_word_embeddings", False))
        super().__init__(**kwargs)

    @property
    def audio_encoder_type(self) -> str:
        """`"whisper"` or `"mimi"`."""
        return self.audio_config.model_type

    @property
    def audio_hidden_size(self) -> int:
        """Width of one encoder frame (Whisper `d_model`, Mimi latent `hidden_size`)."""
        return self.audio_config.d_model if self.audio_encoder_type == "whisper" else self.audio_config.hidden_size

    @property
    def num_hidden_layers(self) -> int:
        return self.text_config.num_hidden_layers

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    def to_dict(self):
        output = super().to_dict()
        output["text_config"] = self.text_config.to_dict()
        output["audio_config"] = self.audio_config.to_dict()
        return output
