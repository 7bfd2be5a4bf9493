"""The paper's diagnostics on any checkpoint and probe set.

* ``misalignment`` (M, Eq. 2): KL( P_θ(· | text context) ‖ P_θ(· | speech context) ) — both from the student,
  averaged over positions whose next token is text.
* ``forgetting`` (F, Eq. 3): KL( Q_φ(· | text) ‖ P_θ(· | text) ) — teacher vs student on all-text input.

Both take span documents (``{"id", "spans": [{"text", "audio"}]}``), a model and its processor.
"""

from __future__ import annotations

import contextlib

import torch

from .kd import logits_at_positions
from .losses import distillation_loss, shared_vocabulary

__all__ = ["misalignment", "forgetting", "MisalignmentProbe"]


@contextlib.contextmanager
def _eval_no_grad(*modules):
    states = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, state in zip(modules, states):
            m.train(state)


def _batches(items, batch_size):
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]


def _device_of(module):
    return next(module.parameters()).device


def _collator(processor, collator):
    if collator is not None:
        return collator
    from .collator import SpanDocumentCollator

    return SpanDocumentCollator(processor, speech_policy="alternate", seed=0)


def _as_documents(documents_or_texts):
    return [d if isinstance(d, dict) else {"id": f"probe-{i}", "text": d} for i, d in enumerate(documents_or_texts)]


def _to(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


_STUDENT_KEYS = ("input_ids", "attention_mask", "input_features", "input_features_mask",
                 "audio_encoder_states", "audio_encoder_mask")


def misalignment(model, processor, documents, collator=None, batch_size: int = 4) -> float:
    """M: mean KL(student | text context ‖ student | speech context) over distilled positions.

    Documents without audio are skipped (their two contexts are identical). Raises ValueError when no document
    has audio.
    """
    docs = [d for d in _as_documents(documents) if any(s.get("audio") is not None for s in d.get("spans", []))]
    if not docs:
        raise ValueError("misalignment needs probe documents with at least one spoken span")
    collate, device = _collator(processor, collator), _device_of(model)
    total, count = 0.0, 0
    with _eval_no_grad(model):
        for chunk in _batches(docs, batch_size):
            batch = _to(collate(chunk), device)
            speech = logits_at_positions(model, batch["student_positions"],
                                         **{k: batch[k] for k in _STUDENT_KEYS if k in batch})
            text = logits_at_positions(model, batch["teacher_positions"], input_ids=batch["teacher_input_ids"],
                                       attention_mask=batch["teacher_attention_mask"])
            n = int(batch["distill_mask"].sum())
            # distillation_loss(student, teacher) = KL(teacher ‖ student): "teacher" = the text context here.
            total += float(distillation_loss(speech.float(), text.float(), batch["distill_mask"])) * n
            count += n
    return total / max(count, 1)


def forgetting(model, teacher, processor, documents_or_texts, collator=None, batch_size: int = 4) -> float:
    """F: mean KL(teacher ‖ student) on the all-text rendering of the documents (or plain texts).

    ``teacher``: a text causal LM taking ``input_ids``/``attention_mask``/``logits_to_keep`` (the base LLM,
    a frozen copy, or a wrapper that disables LoRA). Every span is read as text.
    """
    docs = [dict(d, replay=True) for d in _as_documents(documents_or_texts)]
    if not docs:
        raise ValueError("forgetting needs at least one probe document or text")
    collate, device = _collator(processor, collator), _device_of(model)
    total, count = 0.0, 0
    with _eval_no_grad(model, teacher):
        for chunk in _batches(docs, batch_size):
            batch = _to(collate(chunk), device)
            text_inputs = {"input_ids": batch["teacher_input_ids"], "attention_mask": batch["teacher_attention_mask"]}
            student = logits_at_positions(model, batch["teacher_positions"], **text_inputs)
            reference = logits_at_positions(teacher, batch["teacher_positions"], **text_inputs)
            n = int(batch["distill_mask"].sum())
            student = shared_vocabulary(student, reference)
            total += float(distillation_loss(student.float(), reference.float(), batch["distill_mask"])) * n
            count += n
    return total / max(count, 1)


class MisalignmentProbe:
    """M of one model on span documents, with every spoken span heard (``speech_policy="all"``; the collator keeps
    the last span as text), so each probe document measures its speech context. Active selection scores its
    clusters through this (``selection.active_selection.MisalignmentScorer``)."""

    def __init__(self, model, processor, batch_size: int = 4, max_length: int | None = 1024):
        from .collator import SpanDocumentCollator

        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.collator = SpanDocumentCollator(processor, max_length=max_length, speech_policy="all", seed=0)

    def misalignment(self, documents) -> float:
        return misalignment(self.model, self.processor, documents, collator=self.collator, batch_size=self.batch_size)
