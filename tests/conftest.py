"""Shared tiny-model fixtures (offline, seconds): a tiny byte-level tokenizer, tiny Llama, tiny Whisper / Mimi.

Usage in any test:  `def test_x(tiny_salad): model, processor = tiny_salad(adapter_type="mlp")`.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.tiny import AUDIO_TOKEN, make_tiny_tokenizer  # noqa: F401  (re-exported to the tests)


def tiny_text_config(vocab_size: int, tie: bool = True):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=2048, tie_word_embeddings=tie,
    )


def tiny_whisper_config():
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
        num_mel_bins=80, max_target_positions=64, bos_token_id=1, eos_token_id=1, pad_token_id=1,
        decoder_start_token_id=2, begin_suppress_tokens=None, suppress_tokens=None,
    )


def tiny_mimi_config():
    from transformers import MimiConfig

    return MimiConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=32, num_attention_heads=2,
        num_key_value_heads=2, head_dim=16, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=2, codebook_size=16, upsample_groups=32,
    )


def make_tiny_salad(audio="whisper", adapter_type="mlp", audio_padding="window", stack_factor=None,
                    adapter_num_layers=1, adapter_hidden_size=32, seed=0, tie=True, **config_kwargs):
    """Random tiny `(SaladForCausalLM, SaladProcessor)`; deterministic for a given seed. `config_kwargs` go to
    `SaladConfig` (e.g. `transcript_prompt_ids`)."""
    from transformers import EncodecFeatureExtractor, WhisperFeatureExtractor

    from modeling_salad import SaladConfig, SaladForCausalLM
    from modeling_salad.builder import make_processor

    torch.manual_seed(seed)
    tokenizer = make_tiny_tokenizer()
    audio_config = tiny_whisper_config() if audio == "whisper" else tiny_mimi_config()
    config = SaladConfig(
        text_config=tiny_text_config(len(tokenizer), tie=tie),
        audio_config=audio_config,
        adapter_type=adapter_type,
        adapter_num_layers=adapter_num_layers,
        adapter_hidden_size=adapter_hidden_size,
        adapter_num_attention_heads=2,
        stack_factor=stack_factor,
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
        audio_padding=audio_padding,
        base_text_model="tiny-llama",
        **config_kwargs,
    )
    model = SaladForCausalLM(config).eval()
    if audio == "whisper":
        feature_extractor = WhisperFeatureExtractor(feature_size=80)
    else:
        feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=24000)
    return model, make_processor(tokenizer, feature_extractor, config)


def sine(seconds: float, rate: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A deterministic tone + a little noise, float32 mono."""
    t = np.arange(int(round(seconds * rate))) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def save_tiny_parts(folder):
    """A tiny LLM (`folder/llm`) and a tiny Whisper with a generation config (`folder/whisper`) as `build_salad`
    reads them; returns the Whisper model."""
    from transformers import GenerationConfig, LlamaForCausalLM, WhisperFeatureExtractor
    from transformers import WhisperForConditionalGeneration

    plain = make_tiny_tokenizer(with_audio_token=False)
    LlamaForCausalLM(tiny_text_config(len(plain))).save_pretrained(folder / "llm")
    plain.save_pretrained(folder / "llm")
    whisper = WhisperForConditionalGeneration(tiny_whisper_config())
    whisper.generation_config = GenerationConfig(decoder_start_token_id=2, no_timestamps_token_id=5, eos_token_id=1,
                                                 is_multilingual=False)
    whisper.save_pretrained(folder / "whisper")
    plain.save_pretrained(folder / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder / "whisper")
    return whisper


@pytest.fixture
def tiny_salad():
    """Factory fixture: `tiny_salad(**kwargs) -> (model, processor)` (see `make_tiny_salad`)."""
    return make_tiny_salad


@pytest.fixture
def tiny_tokenizer():
    return make_tiny_tokenizer()


def save_tiny_checkpoint(root):
    """A tiny SALAD folder `root/ckpt` whose config points at its own LLM saved as a plain causal LM `root/base`
    (what salad-eval, lm-eval's `hf` model and the app load as the base text LLM). Returns (ckpt, base)."""
    model, processor = make_tiny_salad()
    base, ckpt = Path(root) / "base", Path(root) / "ckpt"
    model.language_model.save_pretrained(base)
    processor.tokenizer.save_pretrained(base)
    model.config.base_text_model = str(base)
    model.save_pretrained(ckpt)
    processor.save_pretrained(ckpt)
    return ckpt, base


# First lines of a loader script run by `run_isolated`: this repository's packages cannot be imported, so a saved
# folder must stand on its own remote code.
BLOCK_PROJECT_IMPORTS = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_salad", "salad_demo", "trainers"):
                raise ModuleNotFoundError(name)
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_isolated(loader: str, folder, tmp_path, cwd=None):
    """Run `loader` as `python -I load.py FOLDER OUT` offline without PYTHONPATH; return `torch.load(OUT)`."""
    script = Path(tmp_path) / "load.py"
    script.write_text(loader)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(Path(tmp_path) / "hf_home"), TRANSFORMERS_VERBOSITY="error")
    out = Path(tmp_path) / "out.pt"
    proc = subprocess.run([sys.executable, "-I", str(script), str(folder), str(out)], cwd=cwd or tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)
