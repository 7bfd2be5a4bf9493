"""The projector registry: each adapter class answers slot counts and precomputed shapes; a new type is one class."""

import pytest
import torch
from torch import nn

from conftest import make_tiny_salad, save_tiny_parts, sine, tiny_text_config, tiny_whisper_config
from modeling_salad import SaladConfig
from modeling_salad.projectors import PROJECTORS, SaladProjector, projector_class, register_projector


def test_registry_holds_every_adapter_type_and_rejects_unknown_names():
    assert {"mlp", "transformer", "transcript"} <= set(PROJECTORS)
    for name, cls in PROJECTORS.items():
        assert cls.adapter_type == name and issubclass(cls, SaladProjector)
    with pytest.raises(ValueError, match="adapter_type must be one of .*'mlp'.*got 'nope'"):
        projector_class("nope")
    with pytest.raises(ValueError, match="adapter_type must be one of"):
        SaladConfig(text_config=tiny_text_config(300), audio_config=tiny_whisper_config(), adapter_type="nope")


@pytest.mark.parametrize("name, kind", [("mlp", "encoder_frames"), ("transformer", "encoder_frames"),
                                        ("transcript", "slot_states")])
def test_slot_counts_and_precomputed_input(name, kind):
    cls = projector_class(name)
    assert cls.precomputed_input == kind
    assert [cls.num_slots(frames, 10) for frames in (1, 10, 11, 1500)] == [1, 1, 2, 150]
    assert cls.slots_for_precomputed(15, 10) == (15 if kind == "slot_states" else 2)
    extra = dict(transcript_prompt_ids=[2], stack_factor=25) if name == "transcript" else {}
    config = SaladConfig(text_config=tiny_text_config(300), audio_config=tiny_whisper_config(), adapter_type=name,
                         adapter_hidden_size=32, adapter_num_attention_heads=2, **extra)
    model, processor = make_tiny_salad(adapter_type=name, **extra)
    inputs = processor(text="<|audio|>", audio=sine(0.9), sampling_rate=16000)
    with torch.no_grad():
        states, mask = model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
    assert states.shape[-1] == cls.precomputed_width(config)
    assert processor.num_audio_tokens_from_states(int(mask.sum())) == processor.num_audio_tokens(len(sine(0.9)))


def test_a_new_adapter_type_is_one_class():
    @register_projector
    class MeanOfFramesProjector(SaladProjector):
        """Toy adapter: one slot per chunk, the mean of its real frames mapped to the LLM width."""

        adapter_type = "test-mean"

        def __init__(self, config):
            super().__init__()
            self.linear = nn.Linear(config.audio_hidden_size, config.text_config.hidden_size)

        @classmethod
        def num_slots(cls, num_encoder_frames, stack_factor):
            return 1

        def embed(self, states, mask, text_embeddings):
            weights = mask.to(states.dtype)[..., None]
            return self.linear((states * weights).sum(1) / weights.sum(1))

    try:
        model, processor = make_tiny_salad(adapter_type="test-mean")
        assert isinstance(model.multi_modal_projector, MeanOfFramesProjector)
        inputs = processor(text=["a <|audio|> b", "<|audio|> <|audio|>"], audio=[sine(0.5), sine(1.5), sine(0.2)],
                           sampling_rate=16000)
        assert int((inputs["input_ids"] == processor.audio_token_id).sum()) == 3
        with torch.no_grad():
            assert torch.isfinite(model(**inputs).logits).all()
    finally:
        PROJECTORS.pop("test-mean", None)


def test_build_salad_reads_the_whisper_prompt_from_the_generation_config(tmp_path):
    from modeling_salad import build_salad

    whisper = save_tiny_parts(tmp_path)
    model, processor = build_salad(str(tmp_path / "llm"), str(tmp_path / "whisper"), adapter_type="transcript",
                                   adapter_hidden_size=32, stack_factor=25)
    assert model.config.transcript_prompt_ids == [2, 5]
    assert processor.slot_states and int(model.multi_modal_projector.bridge_counts.sum()) > 0
    torch.testing.assert_close(model.audio_encoder.conv1.weight, whisper.model.encoder.conv1.weight)
