"""A tiny random SALAD model and generated span documents, built in code (smoke runs, tests; no downloads).

"Speech" is a deterministic tone whose pitch follows the span's words, so the adapter has something learnable.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from modeling_salad import SAMPLING_RATE
from modeling_salad.processing_salad import AUDIO_TOKEN
from spans import split_into_spans

__all__ = ["build_tiny_salad", "make_tiny_tokenizer", "tiny_documents", "TINY_TEXTS"]

TINY_TEXTS = [
    "the cat sat on the warm mat and looked at the small red bird that sang in the old tree near the house",
    "a quiet river runs past the mill where the baker makes fresh bread every morning before the sun comes up",
    "students read about planets and stars then they wrote short notes on how light travels across space",
    "the market opens at nine and farmers bring apples pears and green beans to sell to the people in town",
    "rain fell all night so the children stayed inside and built a tall tower out of wooden blocks and cards",
    "our team trained hard for the race and on the last day everyone ran faster than they had ever run before",
    "the doctor told him to drink more water sleep well and walk for thirty minutes after each heavy meal",
    "in winter the lake freezes and families skate on the ice while dogs chase each other along the shore",
]


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_tokenizer(with_audio_token: bool = True):
    """Byte-level BPE with no merges: 256 byte tokens + ChatML/pad(/audio) specials; tokenizes any text offline.
    The audio token, when present, is the last id (as `<|audio|>` is appended to a real LLM's vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", bos_token="<|endoftext|>",
                                        pad_token="<pad>")
    extra = ["<|im_start|>", AUDIO_TOKEN] if with_audio_token else ["<|im_start|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_salad(seed: int = 0, hidden_size: int = 32, num_layers: int = 2):
    """Random tiny ``(SaladForCausalLM, SaladProcessor)``: byte-level tokenizer, tiny Llama, tiny Whisper encoder,
    MLP adapter (deterministic for a seed)."""
    from transformers import LlamaConfig, WhisperConfig, WhisperFeatureExtractor

    from modeling_salad import SaladConfig, SaladForCausalLM
    from modeling_salad.builder import make_processor

    torch.manual_seed(seed)
    tokenizer = make_tiny_tokenizer()
    text_config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                              num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=1,
                              max_position_embeddings=4096, tie_word_embeddings=False,
                              initializer_range=0.2)  # peaked random distributions: a visible KD signal
    audio_config = WhisperConfig(vocab_size=64, d_model=32, encoder_layers=1, decoder_layers=1,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                 decoder_ffn_dim=64, max_source_positions=1500, num_mel_bins=80,
                                 max_target_positions=64, pad_token_id=0, bos_token_id=1,
                                 eos_token_id=2, decoder_start_token_id=3)
    config = SaladConfig(text_config=text_config, audio_config=audio_config, adapter_type="mlp",
                         adapter_num_layers=1, adapter_hidden_size=hidden_size, adapter_num_attention_heads=2,
                         stack_factor=8, audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
                         audio_padding="none", base_text_model="tiny-random-llama")
    model = SaladForCausalLM(config)
    processor = make_processor(tokenizer, WhisperFeatureExtractor(feature_size=80), config)
    return model, processor


def _word_tone(text: str, rate: int = SAMPLING_RATE, seconds_per_word: float = 0.12) -> np.ndarray:
    """Deterministic 'speech': one tone per word, pitch from the word's hash."""
    pieces = []
    for word in text.split():
        freq = 200 + int.from_bytes(hashlib.sha256(word.encode()).digest()[:2], "little") % 1800
        t = np.arange(int(seconds_per_word * rate)) / rate
        pieces.append(0.3 * np.sin(2 * np.pi * freq * t))
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(1600, np.float32)


def _tone_audio(span: dict) -> dict | None:
    if span["kind"] != "speech":
        return None
    return {"array": _word_tone(span["text"]), "sampling_rate": SAMPLING_RATE}


def tiny_documents(n: int = 16, seed: int = 0, text_only_every: int = 0) -> list[dict]:
    """``n`` span documents built from ``TINY_TEXTS`` with ``spans.split_into_spans``; speech spans carry tone
    audio. ``text_only_every=k`` makes every k-th document a text-only replay sample."""
    docs = []
    for i in range(n):
        text = TINY_TEXTS[i % len(TINY_TEXTS)]
        doc_id = f"tiny-{i}"
        if text_only_every and i % text_only_every == text_only_every - 1:
            docs.append({"id": doc_id, "spans": [{"text": text, "audio": None}]})
            continue
        spans = split_into_spans(text, seed=seed + i, speech_words=(3, 6), text_words=(4, 8))
        docs.append({"id": doc_id, "spans": [{"text": s["text"], "audio": _tone_audio(s)} for s in spans]})
    return docs
