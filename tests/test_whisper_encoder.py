"""SaladWhisperEncoder: Whisper's encoder on the padded window (unchanged) and on the real length (masked)."""

import torch
from torch import nn
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from conftest import make_tiny_salad, sine, tiny_whisper_config
from modeling_salad.audio_encoder import SaladWhisperEncoder


def _pair(seed=0):
    torch.manual_seed(seed)
    plain = WhisperEncoder(tiny_whisper_config()).eval()
    ours = SaladWhisperEncoder(tiny_whisper_config()).eval()
    ours.load_state_dict(plain.state_dict())
    return plain, ours


def _lone_chunk(plain: WhisperEncoder, features: torch.Tensor) -> torch.Tensor:
    """Brute force with the plain encoder's own modules: one chunk cut to its real length, no padding, no mask."""
    hidden = nn.functional.gelu(plain.conv2(nn.functional.gelu(plain.conv1(features[None])))).permute(0, 2, 1)
    hidden = hidden + plain.embed_positions.weight[: hidden.shape[1]]
    for layer in plain.layers:
        hidden = layer(hidden, None)
    return plain.layer_norm(hidden)[0]


def test_same_parameter_names_as_whisper_encoder():
    plain, ours = _pair()
    assert list(ours.state_dict()) == list(plain.state_dict())


def test_fresh_init_equals_whisper_encoder():
    torch.manual_seed(3)
    plain = WhisperEncoder(tiny_whisper_config())
    torch.manual_seed(3)
    ours = SaladWhisperEncoder(tiny_whisper_config())
    for (name, expected), actual in zip(plain.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(actual, expected), name  # includes the sinusoidal position table


def test_padded_window_equals_whisper_encoder():
    plain, ours = _pair()
    features = torch.randn(2, 80, 3000)
    with torch.no_grad():
        assert torch.equal(ours(features).last_hidden_state, plain(features).last_hidden_state)


def test_real_length_batch_equals_each_chunk_alone():
    plain, ours = _pair(seed=1)
    lengths = [200, 73, 8]
    features = torch.randn(3, 80, max(lengths))
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        batched = ours(features * mask[:, None], attention_mask=mask).last_hidden_state
        for row, length in enumerate(lengths):
            alone = _lone_chunk(plain, features[row, :, :length])
            torch.testing.assert_close(batched[row, : alone.shape[0]], alone, atol=1e-5, rtol=1e-5)


def test_salad_model_checkpoint_keys_and_unpadded_path(tmp_path):
    model, processor = make_tiny_salad(audio_padding="none")
    assert isinstance(model.audio_tower, SaladWhisperEncoder)
    assert all(name.startswith("audio_tower.") and "salad" not in name for name in model.state_dict()
               if "audio_tower" in name)
    inputs = processor(text=["<|audio|>", "<|audio|>"], audio=[sine(0.7), sine(0.2, seed=1)], sampling_rate=16000)
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        real = int(inputs["input_features_mask"][1].sum())
        alone = _lone_chunk(model.audio_tower, inputs["input_features"][1, :, :real])
    torch.testing.assert_close(states[1, : int(mask[1].sum())], alone, atol=1e-5, rtol=1e-5)
