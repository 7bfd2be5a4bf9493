"""FLOP counting, MFU and GPU-hour projection for SALAD training (pure functions, unit-tested).

Conventions (the usual "model FLOPs" of Kaplan et al. / PaLM appendix B, with attention added):

* A matmul with a weight of ``P`` parameters applied to ``T`` tokens costs ``2·P·T`` FLOPs forward.
  Backward costs ``2·P·T`` for the activation gradient plus ``2·P·T`` for the weight gradient, so a
  **trained** weight costs ``6·P·T``, a **frozen weight that gradient still flows through** (e.g. the LLM under
  LoRA) ``4·P·T``, and a **forward-only** weight (teacher, frozen encoder, anything under ``no_grad``) ``2·P·T``.
* Only matmul weights count: embedding look-ups, norms, biases, activations and softmax are not counted (they are
  well under 1 % of the FLOPs at these shapes). The LM head counts as a matmul of ``V·H`` parameters, applied
  only to the positions whose logits are really computed (the distilled positions).
* Attention (scores ``QKᵀ`` and ``A·V``): per layer and per document of length ``L`` the forward costs
  ``2·L·L·d_attn`` for each of the two products, i.e. ``4·L²·d_attn`` without a mask. **Causal** attention only
  needs the lower triangle, counted as half: ``2·L²·d_attn`` (``d_attn`` = heads · head_dim of the queries).
  Backward = 2 × forward, so attention inside a graph that is back-propagated costs ``3×`` the forward, whether or
  not the layer's weights are trained. With padding-free packing each packed document counts with its own ``L``
  (FLOPs a dense-masked SDPA fallback spends on the cross-document blocks are not useful work and do not count).
* MFU = counted FLOPs per second / peak dense bf16 FLOP/s of the device (H100 SXM and H200: 989 TFLOP/s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "PEAK_BF16_FLOPS", "DecoderShape", "TokenMix", "matmul_flops", "attention_flops", "decoder_flops",
    "mfu", "gpu_hours", "projection_flops_per_token", "measure_forward_flops", "QWEN25_3B", "QWEN25_7B",
    "SALAD_ADAPTER", "FORWARD", "BACKPROP", "TRAIN",
]

# Dense (no sparsity) bf16 tensor-core peaks, NVIDIA datasheets. H200 has the same compute as H100 SXM.
PEAK_BF16_FLOPS = {"h100": 989e12, "h200": 989e12}

FORWARD, BACKPROP, TRAIN = "forward", "backprop", "train"
_MATMUL_FACTOR = {FORWARD: 2, BACKPROP: 4, TRAIN: 6}
_ATTENTION_FACTOR = {FORWARD: 1, BACKPROP: 3, TRAIN: 3}


def _check_mode(mode: str) -> None:
    if mode not in _MATMUL_FACTOR:
        raise ValueError(f"mode must be one of {tuple(_MATMUL_FACTOR)}, got {mode!r}")


@dataclass(frozen=True)
class DecoderShape:
    """The matmul-relevant shape of a pre-norm decoder stack with a gated (SwiGLU) MLP (Llama/Qwen2 style)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int = 0
    head_dim: int | None = None
    input_size: int | None = None  # a linear map in (adapter: encoder width · stack factor -> hidden)
    output_size: int | None = None  # a linear map out (adapter: hidden -> LLM width)

    def __post_init__(self):
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def attention_dim(self) -> int:
        """Query width ``heads · head_dim`` (the ``d_attn`` of the attention FLOPs)."""
        return self.num_heads * self.dim_head

    @property
    def layer_params(self) -> int:
        """Matmul weights of one layer: q, k, v, o projections and the three MLP matrices."""
        h, d_q, d_kv = self.hidden_size, self.attention_dim, self.num_kv_heads * self.dim_head
        return h * d_q + 2 * h * d_kv + d_q * h + 3 * h * self.intermediate_size

    @property
    def body_params(self) -> int:
        """Matmul weights applied to every token: all layers plus the optional in/out maps (no LM head)."""
        extra = (self.input_size or 0) * self.hidden_size + self.hidden_size * (self.output_size or 0)
        return self.num_layers * self.layer_params + extra

    @property
    def lm_head_params(self) -> int:
        return self.vocab_size * self.hidden_size


def matmul_flops(params: int, tokens: int, mode: str) -> float:
    """``{2,4,6}·P·T`` for mode forward / backprop (frozen weight, gradient flows through) / train."""
    _check_mode(mode)
    if params < 0 or tokens < 0:
        raise ValueError("params and tokens must be >= 0")
    return float(_MATMUL_FACTOR[mode]) * params * tokens


def attention_flops(doc_lengths, attention_dim: int, num_layers: int, mode: str, causal: bool = True) -> float:
    """Score and value products of all layers: ``Σ_docs 4·L²·d_attn·num_layers`` forward, ½ if causal, ×3 if
    back-propagated. ``doc_lengths``: the length of every (packed or padded-away) document in the step."""
    _check_mode(mode)
    squares = sum(int(length) ** 2 for length in doc_lengths)
    forward = 4.0 * squares * attention_dim * num_layers * (0.5 if causal else 1.0)
    return forward * _ATTENTION_FACTOR[mode]


def decoder_flops(shape: DecoderShape, doc_lengths, mode: str, lm_head_tokens: int = 0,
                  causal: bool = True) -> dict[str, float]:
    """FLOPs of one pass of a decoder stack over documents of the given lengths.

    Returns ``{"linear", "attention", "lm_head", "total"}``; ``lm_head_tokens`` = positions whose logits are
    computed (the LM head runs in the same ``mode`` as the body).
    """
    tokens = sum(int(length) for length in doc_lengths)
    out = {
        "linear": matmul_flops(shape.body_params, tokens, mode),
        "attention": attention_flops(doc_lengths, shape.attention_dim, shape.num_layers, mode, causal),
        "lm_head": matmul_flops(shape.lm_head_params, lm_head_tokens, mode),
    }
    out["total"] = out["linear"] + out["attention"] + out["lm_head"]
    return out


def mfu(flops_per_step: float, step_seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilization in [0, 1+]: ``flops_per_step / step_seconds / peak_flops``."""
    if step_seconds <= 0 or peak_flops <= 0:
        raise ValueError("step_seconds and peak_flops must be > 0")
    return flops_per_step / step_seconds / peak_flops


def gpu_hours(total_tokens: float, flops_per_token: float, utilization: float, peak_flops: float) -> float:
    """GPU-hours to train ``total_tokens``: ``total_tokens · flops_per_token / (utilization · peak) / 3600``."""
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    if peak_flops <= 0 or total_tokens < 0 or flops_per_token < 0:
        raise ValueError("peak_flops must be > 0 and tokens / flops >= 0")
    return total_tokens * flops_per_token / (utilization * peak_flops) / 3600.0


@dataclass(frozen=True)
class TokenMix:
    """What an average student position of Stage I looks like (assumptions of the projection, all stated).

    Defaults: 2/3 speech documents, 1/3 text replay (paper §3.2); in a speech document text spans of 10–30 words
    and speech spans of 5–15 words alternate (mean 20 and 10 words); 1.3 tokens/word; speech at 2.5 words/s
    is 4 s per speech span = 50 Mimi frames at 12.5 Hz. Per (text span, speech span) pair a speech document
    has 26 text + 50 audio student positions, and the teacher reads 26 + 13 tokens.
    """

    audio_fraction: float = field(default=(2 / 3) * 50 / 76)      # student positions that are adapter outputs
    teacher_ratio: float = field(default=(2 / 3) * 39 / 76 + 1 / 3)  # teacher tokens per student position
    kd_fraction: float = field(default=(2 / 3) * 25 / 76 + 1 / 3)   # positions whose next token is text
    seq_len: int = 2048                                              # packed document length (context)
    audio_clip_frames: int = 50                                      # adapter attention runs per clip

    def __post_init__(self):
        for name in ("audio_fraction", "teacher_ratio", "kd_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.seq_len < 1 or self.audio_clip_frames < 1:
            raise ValueError("seq_len and audio_clip_frames must be >= 1")


def projection_flops_per_token(llm: DecoderShape, adapter: DecoderShape, encoder_flops_per_frame: float,
                               mix: TokenMix = TokenMix(), llm_mode: str = TRAIN) -> dict[str, float]:
    """Average FLOPs per student position of a Stage I step (documents fill the context, causal attention).

    student LLM: ``f(6)·N_body + 3·2·s·d_attn·layers + f(6)·V·H·kd``; adapter on audio positions
    (a = audio_fraction): ``a·(6·N_adapter + 3·2·c·d_a·layers_a)`` with c = frames per clip; frozen encoder
    ``a·F_enc``; teacher (forward, r = teacher_ratio): ``r·(2·N_body + 2·r·s·d_attn·layers) + 2·V·H·kd``.
    """
    s, a, r, kd = mix.seq_len, mix.audio_fraction, mix.teacher_ratio, mix.kd_fraction
    student = decoder_flops(llm, [s], llm_mode, lm_head_tokens=0)
    per_token = {
        "student": (student["linear"] + student["attention"]) / s + matmul_flops(llm.lm_head_params, 1, llm_mode) * kd,
    }
    clip = mix.audio_clip_frames
    per_token["adapter"] = decoder_flops(adapter, [clip], TRAIN)["total"] / clip * a
    per_token["encoder"] = encoder_flops_per_frame * a
    teacher_len = max(1, round(r * s))
    teacher = decoder_flops(llm, [teacher_len], FORWARD)
    per_token["teacher"] = ((teacher["linear"] + teacher["attention"]) / teacher_len * r
                            + matmul_flops(llm.lm_head_params, 1, FORWARD) * kd)
    per_token["total"] = sum(per_token.values())
    return per_token


def measure_forward_flops(module, *args, **kwargs) -> int:
    """FLOPs of one forward call as counted by ``torch.utils.flop_counter`` (matmuls, convolutions, SDPA)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


# Real shapes (Qwen2.5 config.json values; q/k/v biases are not matmul FLOPs and are ignored).
QWEN25_3B = DecoderShape(hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=2, intermediate_size=11008,
                         vocab_size=151936)
QWEN25_7B = DecoderShape(hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4, intermediate_size=18944,
                         vocab_size=152064)


def SALAD_ADAPTER(llm_hidden: int, encoder_width: int = 512, stack_factor: int = 1, num_kv_heads: int = 5) -> DecoderShape:
    """The paper's adapter: 12 layers, width 960, MLP 2560, 15 heads, 5 KV heads, in/out linear maps."""
    return DecoderShape(hidden_size=960, num_layers=12, num_heads=15, num_kv_heads=num_kv_heads, intermediate_size=2560,
                        input_size=encoder_width * stack_factor, output_size=llm_hidden)


def params_total(shape: DecoderShape, tied: bool) -> int:
    """All matmul + embedding weights (for cross-checks against published parameter counts)."""
    embeddings = shape.vocab_size * shape.hidden_size
    return shape.body_params + embeddings * (1 if tied else 2)


def human(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit}"
    return f"{flops:.0f} FLOP"



def encoder_flops_per_frame(encoder: str = "mimi", seconds: float = 10.0) -> float:
    """Forward FLOPs of the real-shaped frozen encoder per 12.5 Hz output frame, counted by torch on ``seconds``
    of audio (Mimi: default ``MimiConfig``; Whisper: large-v3 encoder, real length, no 30 s window padding)."""
    import torch
    from transformers import LlamaConfig, MimiConfig, WhisperConfig

    from modeling_salad.configuration_salad import SaladConfig
    from modeling_salad.modeling_salad import SaladForCausalLM

    if encoder == "mimi":
        audio = MimiConfig()
    elif encoder == "whisper":
        audio = WhisperConfig(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                              decoder_layers=1, num_mel_bins=128)
    else:
        raise ValueError(f"encoder must be 'mimi' or 'whisper', got {encoder!r}")
    text = LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1)
    config = SaladConfig(text_config=text, audio_config=audio, adapter_type="mlp", adapter_hidden_size=8,
                         audio_padding="none")
    model = SaladForCausalLM(config).eval()
    frames = round(seconds * 12.5)
    if encoder == "mimi":
        values = torch.zeros(1, 1, frames * 1920)
    else:
        values = torch.zeros(1, 128, frames * 8)
    mask = torch.ones(values.shape[0], values.shape[-1], dtype=torch.long)
    return measure_forward_flops(model.encode_audio, values, mask) / frames


def projection_table(encoder_flops: dict[str, float], utilizations=(0.3, 0.4, 0.5), mix: TokenMix = TokenMix(),
                     budgets=(("Stage I", 24e9), ("Stage II", 1.9e9)), peak: float = PEAK_BF16_FLOPS["h100"]) -> str:
    """Markdown: GPU-hours per (model, encoder, stage) at each assumed MFU (PROJECTIONS, not measurements)."""
    header = "| model | encoder | FLOPs / student token | stage (tokens) | " + " | ".join(
        f"GPU-h @ {100 * u:.0f} % MFU" for u in utilizations) + " |"
    lines = [header, "|" + "---|" * (4 + len(utilizations))]
    for name, llm in (("SALAD-3B (Qwen2.5-3B)", QWEN25_3B), ("SALAD-7B (Qwen2.5-7B)", QWEN25_7B)):
        adapter = SALAD_ADAPTER(llm.hidden_size)
        for encoder, per_frame in encoder_flops.items():
            per_token = projection_flops_per_token(llm, adapter, per_frame, mix)["total"]
            for stage, tokens in budgets:
                hours = " | ".join(f"{gpu_hours(tokens, per_token, u, peak):,.0f}" for u in utilizations)
                lines.append(f"| {name} | {encoder} | {per_token / 1e9:.2f} GFLOP | {stage} ({tokens / 1e9:g}B) | {hours} |")
    return "\n".join(lines)


def main() -> None:
    encoders = {name: encoder_flops_per_frame(name) for name in ("mimi", "whisper")}
    for name, value in encoders.items():
        print(f"# {name} encoder: {human(value)} per 12.5 Hz frame (torch.utils.flop_counter, 10 s clip)")
    for name, llm in (("3B", QWEN25_3B), ("7B", QWEN25_7B)):
        parts = projection_flops_per_token(llm, SALAD_ADAPTER(llm.hidden_size), encoders["mimi"])
        print(f"# {name} (mimi) per student token: " + ", ".join(f"{k} {v / 1e9:.2f} GFLOP" for k, v in parts.items()))
    print(projection_table(encoders))


if __name__ == "__main__":
    main()
