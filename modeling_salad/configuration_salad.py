"""SALAD configuration: a text causal LM, a frozen speech encoder (Whisper encoder or Mimi) and an adapter.

Declared fields and sub-configs; the adapter's own defaults and rules come from its projector class (see
`projectors.py`), never from tests of its name here. Remote-code safe: only transformers' public API, no
import-time side effects.
"""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .posterior_adapter import SaladPosteriorProjector  # noqa: F401  (registers adapter_type="posterior")
from .projectors import projector_class
from .transcript_adapter import SaladTranscriptProjector  # noqa: F401  (registers adapter_type="transcript")

AUDIO_PADDING_MODES = ("window", "none")
SUPPORTED_AUDIO_MODEL_TYPES = ("whisper", "mimi")


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
            Name of a registered projector class (`projectors.PROJECTORS`): `"transformer"`: frame stacking, a
            linear input map and a small causal transformer (paper: 12 layers, width 960); `"mlp"`: frame stacking +
            RMSNorm + SwiGLU projector (Ultravox); `"transcript"` (Whisper only): Whisper's own decoder reads the
            clip greedily and each recognized token fills one slot with the LLM's embedding of its text plus a
            learned correction (see `transcript_adapter.py`); `stack_factor` then sets the slot rate.
            `"posterior"` (Whisper only): the same slots, each the expected LLM embedding under Whisper's
            teacher-forced posterior over its vocabulary; differentiable, so training reaches the Whisper decoder
            (see `posterior_adapter.py`).
        adapter_num_layers (`int`, defaults to 12): Layers of the transformer adapter.
        adapter_hidden_size (`int`, defaults to 960): Width of the adapter.
        adapter_intermediate_size (`int`, *optional*): FFN width of the transformer adapter (default 2.4 x width).
        adapter_num_attention_heads (`int`, *optional*): Heads of the transformer adapter (default width // 64).
        adapter_num_key_value_heads (`int`, *optional*): KV heads of the transformer adapter (paper: 5; default =
            attention heads).
        stack_factor (`int`, *optional*):
            Encoder frames per LLM embedding; the projector class sets the default (4 for Whisper -> 12.5 Hz, 1 for
            Mimi, 10 for the transcript adapter = 5 slots per second).
        audio_token_id (`int`, *optional*): Id of the `<|audio|>` placeholder token in the LLM vocabulary.
        base_text_model (`str`, *optional*): Path or Hub id of the text LLM this model was built from.
        audio_padding (`str`, defaults to `"window"`):
            Whisper only. `"window"`: every chunk is padded to the encoder's 30 s window (as pretrained) and only
            the output frames of the real length are kept; `"none"`: the encoder runs on the real length only.
        max_audio_seconds (`float`, defaults to 600): Longest clip the processor accepts (longer raises).
        bridge_max_pieces (`int`, defaults to 4): Transcript adapter: LLM tokens averaged per Whisper token.
        transcript_prompt_ids (`list[int]`, *optional*): Transcript adapter: the Whisper decoder prompt, read from
            the Whisper generation config by `build_salad`.
        posterior_temperature (`float`, defaults to 1.0): Posterior front end: initial temperature of Whisper's slot
            posterior (learned); 0 = argmax mode (the greedy token's bridged embedding: the transcript adapter
            without its correction).
        posterior_top_k (`int`, defaults to 0): Posterior front end: tokens kept per slot (the posterior is
            renormalized over them); 0 = the whole Whisper vocabulary (measured: as fast on CPU, the decoder
            dominates; top-16 is 2.6 % off on average, up to 28 % on uncertain slots; benchmarks/RESULTS.md).
        posterior_pieces (`str`, defaults to `"mean"`): Posterior front end: a Whisper token whose text is several
            LLM tokens gives their mean embedding (`"mean"`), the first one's (`"first"`), or one slot per piece
            (`"spread"`: the LLM reads its own tokenization of the transcript; pieces take the slots that would
            otherwise hold the filler, and what does not fit in a chunk's slots is dropped; needs top-k > 0).
        posterior_fillers (`str`, defaults to `"end"`): Posterior front end: where a chunk's unused slots (the
            learned filler) go: after the transcript (`"end"`) or before it (`"start"`, so that the recognized
            words run straight into the text that follows the clip).
        posterior_filler_text (`str`, *optional*): Posterior front end: one LLM token whose input embedding the
            learned filler starts from (`build_salad` sets it); None = a zero vector. A space (`" "`) reads to the
            LLM as trailing whitespace, where a zero vector is unlike any input it was trained on
            (benchmarks/RESULTS.md "Posterior front end: pieces, filler and temperature").
        posterior_hide_fillers (`bool`, defaults to False): Posterior front end: the model masks a chunk's filler
            slots out of the LLM's attention and numbers the remaining positions contiguously, so that in argmax
            mode the LLM reads exactly its own tokenization of the transcript (the ASR cascade); the processor's
            slot counts do not change. Needs `posterior_fillers="start"` (the slot before the text that follows a
            clip is then the transcript's last piece).
        posterior_logit_bias (`bool`, defaults to False): Posterior front end: a learnable bias over Whisper's
            content tokens, added to the decoder's logits both when it transcribes greedily and in the slot
            posterior (zero at the start, so the front end starts as configured). It can learn which written form
            the text uses where the recognizer hesitates between two (" zero" or " 0") without moving the
            decoder's weights.
        posterior_piece_alignment (`str`, defaults to `"start"`): Posterior front end with `posterior_pieces="spread"`:
            a candidate token with another number of LLM pieces than the greedy one offers its first pieces
            (`"start"`) or its last ones (`"end"`) to the greedy token's slots. With `"end"` the runner-up " 0" (a
            bare space and "0" to the LLM) offers "0" to the slot of a greedy " zero", where `"start"` offers the
            space. Argmax mode reads the same either way.
        posterior_training_temperature (`float`, *optional*): Posterior front end: the slot posterior's temperature
            while the model is in training mode (the learned temperature, untouched then, applies in eval mode).
            A warm posterior lets distillation reach the runner-up tokens: at T = 0.1 a runner-up at 0.25 against
            0.63 weighs 1e-4 of the slot.
        posterior_numeral_bias (`bool`, defaults to False): Posterior front end: one learnable scalar added to the
            logits of every Whisper token that is written with digits only (" 3", "7", " 12"), in greedy decoding
            and in the slot posterior (zero at the start). It is the front end's preference between a numeral and
            the number word ("3" or "three"): one shared value, so it moves by the objective's net signal over all
            numerals, where a per-token bias also drifts on the many tokens that the data barely shows.
        whisper_suppress_tokens (`list[int]`, *optional*): The Whisper generation config's `suppress_tokens` (symbol
            tokens such as "+", "(" and "#" that Whisper's `generate` never writes); `build_salad` reads them.
        posterior_suppress_tokens (`bool`, defaults to False): Posterior front end: never write the
            `whisper_suppress_tokens`, in greedy decoding and in the slot posterior, as Whisper's `generate` (the
            ASR cascade) does. Without it the greedy pass may write "3+6" where `generate` writes "3 plus 6".
    """

    model_type = "salad"
    # Declared so attention implementation and dtype choices reach both sub-models.
    sub_configs_defaults = {
        "text_config": SubConfigSpec(AutoConfig, model_type="llama"),
        "audio_config": SubConfigSpec(AutoConfig, model_type="whisper"),
    }

    text_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    adapter_type: str = "transformer"
    adapter_num_layers: int = 12
    adapter_hidden_size: int = 960
    adapter_intermediate_size: int | None = None
    adapter_num_attention_heads: int | None = None
    adapter_num_key_value_heads: int | None = None
    stack_factor: int | None = None
    audio_token_id: int | None = None
    base_text_model: str | None = None
    audio_padding: str = "window"
    max_audio_seconds: float = 600.0
    bridge_max_pieces: int = 4
    transcript_prompt_ids: list[int] | None = None
    posterior_temperature: float = 1.0
    posterior_top_k: int = 0
    posterior_pieces: str = "mean"
    posterior_fillers: str = "end"
    posterior_filler_text: str | None = None
    posterior_hide_fillers: bool = False
    posterior_logit_bias: bool = False
    posterior_piece_alignment: str = "start"
    posterior_training_temperature: float | None = None
    posterior_numeral_bias: bool = False
    whisper_suppress_tokens: list[int] | None = None
    posterior_suppress_tokens: bool = False

    def __post_init__(self, **kwargs):
        for name in ("text_config", "audio_config"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (dict, PreTrainedConfig)):
                raise ValueError(f"`{name}` must be a dict or a PreTrainedConfig, got {type(value).__name__}.")
        super().__post_init__(**kwargs)
        if "tie_word_embeddings" not in kwargs:
            self.tie_word_embeddings = getattr(self.text_config, "tie_word_embeddings", False)
        self._validate()

    @property
    def projector_class(self):
        """The registered projector class of `adapter_type` (what the model and the processor ask)."""
        return projector_class(self.adapter_type)

    def _validate(self):
        """Every rule and derived default of the config, in one place."""
        if self.audio_config.model_type not in SUPPORTED_AUDIO_MODEL_TYPES:
            raise ValueError(f"audio_config.model_type must be one of {SUPPORTED_AUDIO_MODEL_TYPES}, "
                             f"got {self.audio_config.model_type!r}.")
        if self.audio_padding not in AUDIO_PADDING_MODES:
            raise ValueError(f"audio_padding must be one of {AUDIO_PADDING_MODES}, got {self.audio_padding!r}.")
        if self.transcript_prompt_ids is not None:
            self.transcript_prompt_ids = [int(i) for i in self.transcript_prompt_ids]
        if self.whisper_suppress_tokens is not None:
            self.whisper_suppress_tokens = [int(i) for i in self.whisper_suppress_tokens]
        self.projector_class.configure(self)
        self.stack_factor = int(self.stack_factor)
        if self.stack_factor < 1:
            raise ValueError(f"stack_factor must be >= 1, got {self.stack_factor}.")
        if self.adapter_num_layers < 1 or self.adapter_hidden_size < 1:
            raise ValueError("adapter_num_layers and adapter_hidden_size must be positive.")
        width = self.adapter_hidden_size
        if not self.adapter_intermediate_size:
            self.adapter_intermediate_size = max(64, int(round(2.4 * width / 64)) * 64)
        self.adapter_num_attention_heads = int(self.adapter_num_attention_heads or max(1, width // 64))
        self.adapter_num_key_value_heads = int(self.adapter_num_key_value_heads or self.adapter_num_attention_heads)
        if width % self.adapter_num_attention_heads:
            raise ValueError("adapter_hidden_size must be divisible by adapter_num_attention_heads.")
        if self.adapter_num_attention_heads % self.adapter_num_key_value_heads:
            raise ValueError("adapter_num_attention_heads must be divisible by adapter_num_key_value_heads.")
        if int(self.bridge_max_pieces) < 1:
            raise ValueError(f"bridge_max_pieces must be >= 1, got {self.bridge_max_pieces}.")
        self.max_audio_seconds = float(self.max_audio_seconds)

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
