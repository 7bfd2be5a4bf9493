"""benchmarks/flops.py: FLOP formulas against hand-computed numbers, torch's FLOP counter, MFU and projection."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "flops.py"
_spec = importlib.util.spec_from_file_location("salad_benchmarks_flops", _PATH)
flops = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = flops  # dataclasses resolve annotations through sys.modules
_spec.loader.exec_module(flops)

# hidden 4, 2 layers, 2 heads (head_dim 2), 1 KV head, MLP 8, vocab 10.
TINY = flops.DecoderShape(hidden_size=4, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=8, vocab_size=10)


def test_layer_params_by_hand():
    # q 4x4 + k,v 2 x (4x2) + o 4x4 + MLP 3 x (4x8) = 16 + 16 + 16 + 96
    assert TINY.layer_params == 144
    assert TINY.body_params == 288
    assert TINY.lm_head_params == 40
    assert TINY.attention_dim == 4


def test_matmul_factors():
    assert flops.matmul_flops(1000, 7, flops.TRAIN) == 6 * 1000 * 7
    assert flops.matmul_flops(1000, 7, flops.BACKPROP) == 4 * 1000 * 7
    assert flops.matmul_flops(1000, 7, flops.FORWARD) == 2 * 1000 * 7
    with pytest.raises(ValueError, match="mode"):
        flops.matmul_flops(1, 1, "inference")


def test_decoder_flops_by_hand():
    out = flops.decoder_flops(TINY, [3, 5], flops.TRAIN, lm_head_tokens=2)
    assert out["linear"] == 6 * 288 * 8
    # causal forward: 4 · (3² + 5²) · d_attn 4 · 2 layers · ½ = 544; trained graph: × 3
    assert out["attention"] == 3 * 544
    assert out["lm_head"] == 6 * 40 * 2
    assert out["total"] == 6 * 288 * 8 + 3 * 544 + 480
    forward = flops.decoder_flops(TINY, [3, 5], flops.FORWARD, causal=False)
    assert forward["attention"] == 4 * 34 * 4 * 2
    assert forward["lm_head"] == 0


def test_packing_counts_each_document():
    packed = flops.attention_flops([1024, 1024], 128, 1, flops.FORWARD)
    single = flops.attention_flops([2048], 128, 1, flops.FORWARD)
    assert single == 2 * packed


def test_mlp_only_stack_is_six_n_t():
    # An MLP-only network (no attention, no head): 6·N·T exactly.
    n_params, tokens = 3 * 64 * 256, 4096
    assert flops.matmul_flops(n_params, tokens, flops.TRAIN) == 6 * n_params * tokens


def test_matches_torch_flop_counter_on_a_tiny_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=100, tie_word_embeddings=True)
    config._attn_implementation = "eager"  # explicit matmuls over the full (masked) square
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    length = 16
    counted = flops.measure_forward_flops(model, input_ids=torch.randint(0, 100, (1, length)))
    shape = flops.DecoderShape(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                               vocab_size=100)
    expected = flops.decoder_flops(shape, [length], flops.FORWARD, lm_head_tokens=length, causal=False)["total"]
    assert counted == pytest.approx(expected, rel=0.01)  # the rest: rotary inv_freq outer product


def test_published_parameter_counts():
    assert flops.params_total(flops.QWEN25_3B, tied=True) == pytest.approx(3.09e9, rel=0.005)
    assert flops.params_total(flops.QWEN25_7B, tied=False) == pytest.approx(7.62e9, rel=0.005)
    # the paper's adapter is "122M": 12 x 960-wide GQA layers + 512->960 in + 960->3584 out
    assert flops.SALAD_ADAPTER(3584).body_params == pytest.approx(122e6, rel=0.01)


def test_mfu():
    assert flops.mfu(989e12 * 0.5, 1.0, flops.PEAK_BF16_FLOPS["h100"]) == pytest.approx(0.5)
    assert flops.mfu(1e12, 2.0, 1e12) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        flops.mfu(1.0, 0.0, 1e12)


def test_gpu_hours():
    # 1e9 tokens x 6e9 FLOP/token at 50 % of 1e15 FLOP/s = 12,000 s
    assert flops.gpu_hours(1e9, 6e9, 0.5, 1e15) == pytest.approx(12_000 / 3600)
    with pytest.raises(ValueError, match="utilization"):
        flops.gpu_hours(1e9, 6e9, 0.0, 1e15)


def test_projection_by_hand_text_only():
    # no audio, teacher reads the same length, logits at every position
    mix = flops.TokenMix(audio_fraction=0.0, teacher_ratio=1.0, kd_fraction=1.0, seq_len=8)
    adapter = flops.DecoderShape(hidden_size=4, num_layers=1, num_heads=1, num_kv_heads=1, intermediate_size=4)
    out = flops.projection_flops_per_token(TINY, adapter, encoder_flops_per_frame=1e6, mix=mix)
    attention_per_token_fwd = 4 * 8 * 8 * 4 * 2 * 0.5 / 8  # causal, per token, 2 layers
    assert out["student"] == pytest.approx(6 * 288 + 3 * attention_per_token_fwd + 6 * 40)
    assert out["teacher"] == pytest.approx(2 * 288 + attention_per_token_fwd + 2 * 40)
    assert out["adapter"] == 0 and out["encoder"] == 0
    assert out["total"] == pytest.approx(out["student"] + out["teacher"])


def test_projection_scales_with_audio_fraction():
    mix = flops.TokenMix(audio_fraction=0.5, teacher_ratio=0.5, kd_fraction=0.5, seq_len=2048)
    adapter = flops.SALAD_ADAPTER(2048)
    out = flops.projection_flops_per_token(flops.QWEN25_3B, adapter, encoder_flops_per_frame=2e9, mix=mix)
    assert out["encoder"] == pytest.approx(1e9)
    assert out["adapter"] > 0.5 * 6 * adapter.body_params  # plus the adapter's attention
    # the student dominates: a 3B LLM at 6N per token
    assert out["student"] > 6 * flops.QWEN25_3B.body_params


def test_validation():
    with pytest.raises(ValueError, match="num_kv_heads"):
        flops.DecoderShape(hidden_size=8, num_layers=1, num_heads=3, num_kv_heads=2, intermediate_size=8)
    with pytest.raises(ValueError, match="audio_fraction"):
        flops.TokenMix(audio_fraction=1.5)
