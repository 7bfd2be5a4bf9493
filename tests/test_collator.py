"""SpanDocumentCollator: aligned student/teacher positions, padding, replay, refusal of missing audio."""

import numpy as np
import pytest
import torch

from trainers.collator import SpanDocumentCollator
from trainers.losses import distillation_loss


def tone(seconds, freq=300.0):
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def docs():
    return [
        {"id": "a", "spans": [{"text": "hello there", "audio": None},
                              {"text": "spoken words here", "audio": {"array": tone(0.6), "sampling_rate": 16000}},
                              {"text": "and more text after", "audio": None}]},
        {"id": "b", "spans": [{"text": "first spoken", "audio": tone(0.3, 500)},
                              {"text": "then read", "audio": None}]},
    ]


@pytest.fixture
def processor(tiny_salad):
    return tiny_salad(audio_padding="none")[1]


@pytest.mark.parametrize("side", ["left", "right"])
def test_positions_point_at_identical_next_tokens(processor, side):
    batch = SpanDocumentCollator(processor, padding_side=side, speech_policy="all")(docs())
    ids, tids = batch["input_ids"], batch["teacher_input_ids"]
    assert ids.shape[1] != tids.shape[1]  # different lengths on the two sides
    for b in range(2):
        m = batch["distill_mask"][b]
        sp, tp = batch["student_positions"][b][m], batch["teacher_positions"][b][m]
        assert torch.equal(ids[b, sp + 1], tids[b, tp + 1])
        assert batch["attention_mask"][b, sp].all() and batch["teacher_attention_mask"][b, tp].all()
        # labels mark exactly the distilled next tokens
        assert torch.equal((batch["labels"][b] != -100).nonzero().squeeze(-1), sp + 1)
    assert (ids == processor.audio_token_id).sum() > 0 and "input_features" in batch
    if side == "left":
        assert batch["attention_mask"][:, -1].all() and batch["teacher_attention_mask"][:, -1].all()
    else:
        assert batch["attention_mask"][:, 0].all()


def test_left_and_right_padding_distil_the_same_tokens(processor):
    right = SpanDocumentCollator(processor, padding_side="right", speech_policy="all")(docs())
    left = SpanDocumentCollator(processor, padding_side="left", speech_policy="all")(docs())
    for batch_r, batch_l in ((right, left),):
        for b in range(2):
            m = batch_r["distill_mask"][b]
            tok_r = batch_r["input_ids"][b, batch_r["student_positions"][b][m] + 1]
            tok_l = batch_l["input_ids"][b, batch_l["student_positions"][b][m] + 1]
            assert torch.equal(tok_r, tok_l)


def test_forcing_student_logits_to_teacher_at_aligned_positions_gives_zero_kd(processor):
    batch = SpanDocumentCollator(processor, speech_policy="all")(docs())
    vocab = 17
    g = torch.Generator().manual_seed(0)
    student_full = torch.randn(2, batch["input_ids"].shape[1], vocab, generator=g)
    teacher_full = torch.randn(2, batch["teacher_input_ids"].shape[1], vocab, generator=g)
    sp, tp, mask = batch["student_positions"], batch["teacher_positions"], batch["distill_mask"]
    for b in range(2):
        student_full[b, sp[b][mask[b]]] = teacher_full[b, tp[b][mask[b]]]
    gather = lambda full, pos: full.gather(1, pos.unsqueeze(-1).expand(-1, -1, vocab))
    assert distillation_loss(gather(student_full, sp), gather(teacher_full, tp), mask).item() < 1e-6
    # a misaligned pairing is not zero
    assert distillation_loss(gather(student_full, sp), gather(teacher_full, (tp + 1).clamp(
        max=teacher_full.shape[1] - 1)), mask).item() > 0.1


def test_text_spans_have_identical_ids_on_both_sides(processor):
    batch = SpanDocumentCollator(processor, speech_policy="all")(docs()[:1])
    tok = processor.tokenizer
    text = tok.decode(batch["teacher_input_ids"][0], skip_special_tokens=True)
    assert text == "hello there spoken words here and more text after"
    student_text = tok.decode([i for i in batch["input_ids"][0].tolist() if i != processor.audio_token_id])
    assert student_text == "hello there and more text after"


def test_text_only_replay_teacher_equals_student(processor):
    replay = [{"id": "r", "text": "plain text replay sample"}, dict(docs()[0], replay=True)]
    batch = SpanDocumentCollator(processor)(replay)
    assert torch.equal(batch["input_ids"], batch["teacher_input_ids"])
    assert torch.equal(batch["student_positions"], batch["teacher_positions"])
    assert "input_features" not in batch
    n_tokens = len(processor.tokenizer("plain text replay sample", add_special_tokens=False)["input_ids"])
    assert int(batch["distill_mask"][0].sum()) == n_tokens - 1


def test_placeholder_without_audio_is_refused(processor):
    bad = [{"id": "x", "spans": [{"text": "look <|audio|> here", "audio": None}]}]
    with pytest.raises(ValueError, match="placeholder"):
        SpanDocumentCollator(processor)(bad)
    with pytest.raises(ValueError):
        SpanDocumentCollator(processor, speech_policy="all")(
            [{"id": "y", "spans": [{"text": "a b", "audio": np.zeros(0, np.float32)}, {"text": "c", "audio": None}]}])


def test_decisions_are_deterministic_per_doc_and_epoch(processor):
    many = [{"id": f"d{i}", "spans": [{"text": f"word {j}", "audio": tone(0.2)} for j in range(6)]} for i in range(6)]
    c1, c2 = SpanDocumentCollator(processor, seed=3), SpanDocumentCollator(processor, seed=3)
    heard = lambda c: [c.render(d).heard for d in many]
    assert heard(c1) == heard(c2)
    for h in heard(c1):  # "alternate": never two heard spans in a row, and something stays text
        assert not any(a and b for a, b in zip(h, h[1:])) and not all(h)
    before = heard(c1)
    c1.set_epoch(1)
    assert heard(c1) != before


def test_truncation_on_span_boundaries(processor):
    doc = docs()[0]
    collator = SpanDocumentCollator(processor, max_length=20, speech_policy="all")
    rendered = collator.render(doc)
    assert len(rendered.student_ids) <= 20 and len(rendered.teacher_ids) <= 20
    text = processor.tokenizer.decode(rendered.teacher_ids)
    assert text == "hello there"  # the spoken span does not fit, so the document ends at the boundary


def test_precomputed_encoder_states(tiny_salad):
    model, processor = tiny_salad(audio_padding="none")
    states = np.random.default_rng(0).normal(size=(10, model.config.audio_hidden_size)).astype(np.float32)
    doc = {"id": "p", "spans": [{"text": "hi", "audio": None}, {"text": "heard", "audio": {"encoder_states": states}},
                                {"text": "tail words", "audio": None}]}
    batch = SpanDocumentCollator(processor, speech_policy="all")([doc])
    assert batch["audio_encoder_states"].shape == (1, 10, model.config.audio_hidden_size)
    expected = processor.num_audio_tokens_from_frames(10)
    assert int((batch["input_ids"] == processor.audio_token_id).sum()) == expected
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                audio_encoder_states=batch["audio_encoder_states"], audio_encoder_mask=batch["audio_encoder_mask"])
    assert torch.isfinite(out.logits).all()
