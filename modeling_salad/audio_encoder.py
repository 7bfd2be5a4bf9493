"""The frozen speech encoders SALAD reads: Whisper's encoder or Mimi's pre-quantization encoder (remote-code safe).

Dimension letters: N = audio chunks, M = mel bins, L = mel frames or samples per chunk, T = encoder frames,
C = encoder width.
"""

from torch import nn
from transformers import AutoModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder


def whisper_encoder_frames(num_mel_frames):
    """Encoder output frames for `num_mel_frames` log-mel frames (conv2 has stride 2). Works on ints and tensors."""
    return (num_mel_frames - 1) // 2 + 1


def build_audio_encoder(config) -> nn.Module:
    """A randomly initialized speech encoder for `config.audio_config` (weights come from a checkpoint)."""
    if config.audio_encoder_type == "whisper":
        return WhisperEncoder(config.audio_config)
    return AutoModel.from_config(config.audio_config.encoder_config)


def pretrained_audio_encoder(full_model: nn.Module, config) -> nn.Module:
    """The encoder of a pretrained WhisperModel / WhisperForConditionalGeneration or MimiModel."""
    if config.audio_encoder_type == "whisper":
        return full_model.get_encoder() if hasattr(full_model, "get_encoder") else full_model.encoder
    return full_model.encoder
