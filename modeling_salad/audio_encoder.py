"""The frozen speech encoders SALAD reads: Whisper's encoder or Mimi's pre-quantization encoder (remote-code safe).

Dimension letters: N = audio chunks, M = mel bins, L = mel frames or samples per chunk, T = encoder frames,
C = encoder width.
"""

import torch
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder


def whisper_encoder_frames(num_mel_frames):
    """Encoder output frames for `num_mel_frames` log-mel frames (conv2 has stride 2). Works on ints and tensors."""
    return (num_mel_frames - 1) // 2 + 1


class SaladWhisperEncoder(WhisperEncoder):
    """Whisper's encoder that also runs on the real length of each chunk (same parameters as `WhisperEncoder`).

    Without `attention_mask` it is `WhisperEncoder` on the padded 30 s window, as pretrained. With `attention_mask`
    `[N, L]` (1 on the real mel frames, a prefix of each row) the input is cut to the longest real length, padding
    is zeroed before and after the first convolution (as a lone chunk would see it) and the attention ignores the
    padded frames, so a chunk gives the same real frames whether it is batched with longer chunks or alone.
    """

    def _initialize_weights(self, module, is_custom_code: bool = False):
        # Initialize exactly as transformers' own WhisperEncoder: its shortcut for custom code skips modules without
        # direct parameters, which would leave the sinusoidal position table randomly initialized.
        super()._initialize_weights(module, is_custom_code=False)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        if attention_mask is None:
            return super().forward(input_features, **kwargs)
        return BaseModelOutput(last_hidden_state=self._forward_real_length(input_features, attention_mask.bool()))

    def _forward_real_length(self, input_features: torch.Tensor, mel_mask: torch.Tensor) -> torch.Tensor:
        keep = mel_mask[:, None, :].to(input_features.dtype)
        hidden = nn.functional.gelu(self.conv1(input_features * keep)) * keep
        hidden = nn.functional.gelu(self.conv2(hidden)).permute(0, 2, 1)
        num_frames = hidden.shape[1]
        if num_frames > self.config.max_source_positions:
            raise ValueError(
                f"A chunk has {num_frames} encoder frames, more than the encoder's "
                f"{self.config.max_source_positions}; chunk long audio with SaladProcessor."
            )
        hidden = hidden + self.embed_positions.weight[:num_frames].to(hidden.dtype)
        out_lengths = whisper_encoder_frames(mel_mask.sum(-1))
        frame_mask = torch.arange(num_frames, device=hidden.device)[None, :] < out_lengths[:, None]
        attention_mask = torch.zeros(hidden.shape[0], 1, num_frames, num_frames, dtype=hidden.dtype,
                                     device=hidden.device)
        attention_mask = attention_mask.masked_fill(~frame_mask[:, None, None, :], torch.finfo(hidden.dtype).min)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask)
        return self.layer_norm(hidden)


def build_audio_encoder(config) -> nn.Module:
    """A randomly initialized speech encoder for `config.audio_config` (weights come from a checkpoint)."""
    if config.audio_encoder_type == "whisper":
        return SaladWhisperEncoder(config.audio_config)
    return AutoModel.from_config(config.audio_config.encoder_config)


def pretrained_audio_encoder(full_model: nn.Module, config) -> nn.Module:
    """The encoder of a pretrained WhisperModel / WhisperForConditionalGeneration (as a `SaladWhisperEncoder`
    holding the same tensors) or MimiModel."""
    if config.audio_encoder_type != "whisper":
        return full_model.encoder
    pretrained = full_model.get_encoder() if hasattr(full_model, "get_encoder") else full_model.encoder
    with torch.device("meta"):
        encoder = SaladWhisperEncoder(pretrained.config)
    encoder.load_state_dict(pretrained.state_dict(), assign=True)
    return encoder
