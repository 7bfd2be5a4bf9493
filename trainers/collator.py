"""Span documents -> aligned student (partly speech) and teacher (all text) batches.

A document is ``{"id": str, "spans": [{"text": str, "audio": <audio> | None}, ...]}`` where ``<audio>`` is
anything ``modeling_salad.processing_salad.load_audio`` accepts (array, path, ``{"array","sampling_rate"}``,
``{"bytes"|"path"}``) or precomputed frozen-encoder frames ``{"encoder_states": array [T, D]}``. A plain
``{"id", "text"}`` document (or ``"replay": True``) is a text-only replay sample: teacher input == student input.

Each span is tokenized on its own (every span after the first gets a leading space), so a text span has the
same token ids on both sides. A position is distilled when the token after it is a text token the student reads;
``student_positions[b, k]`` and ``teacher_positions[b, k]`` index the same next token in the two padded sequences.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modeling_salad import SAMPLING_RATE, load_audio
from spans import audio_token_count, audio_token_count_from_states

__all__ = ["SpanDocumentCollator", "RenderedDocument"]

_SPEECH_POLICIES = ("alternate", "all", "random")


@dataclass
class RenderedDocument:
    """One document rendered on both sides, before padding."""

    student_ids: list[int]
    teacher_ids: list[int]
    pairs: list[tuple[int, int]]              # (student position, teacher position) to distill
    clips: list[Any] = field(default_factory=list)  # (clip, source audio) per heard span, placeholder order
    heard: list[bool] = field(default_factory=list)  # per span: does the student hear it


def _stable_seed(*parts: Any) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


class SpanDocumentCollator:
    """Collate span documents into a cross-modal distillation batch.

    Args:
        processor: a ``SaladProcessor`` (needs ``.tokenizer``, ``.audio_token_id``, the counts that
            ``spans.audio_token_count`` asks it for, and ``extract_audio_features``).
        max_length: truncate each document at a span boundary so both sides fit (None: no limit).
        padding_side: "right" or "left" (both sequences, positions are indices into the padded tensors).
        speech_policy: which spans with audio the student hears. "alternate" (paper: alternating speech and
            text spans): a span with audio is heard unless the span before it was heard; "all": every span
            with audio; "random": each with probability ``speech_probability``.
        speech_probability: with "alternate"/"all", the chance a heard-eligible span is really heard (1.0 =
            always); with "random", the per-span chance.
        seed: base seed; decisions are a pure function of (seed, epoch, document id, span index).
        pad_to_multiple_of: pad lengths up to a multiple of this.
        encoder_cache: a ``spans.EncoderStatesCache`` bound to the student's encoder (``for_model``): heard
            one-chunk clips found there are given as precomputed ``audio_encoder_states`` (a batch with any
            uncached clip uses raw audio).
    """

    def __init__(self, processor, max_length: int | None = None, padding_side: str = "right",
                 speech_policy: str = "alternate", speech_probability: float = 1.0, seed: int = 0,
                 pad_to_multiple_of: int | None = None, encoder_cache=None):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if speech_policy not in _SPEECH_POLICIES:
            raise ValueError(f"speech_policy must be one of {_SPEECH_POLICIES}, got {speech_policy!r}")
        if not 0.0 <= speech_probability <= 1.0:
            raise ValueError(f"speech_probability must be in [0, 1], got {speech_probability}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be >= 2 or None, got {max_length}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.audio_token_id = int(processor.audio_token_id)
        self.max_length = max_length
        self.padding_side = padding_side
        self.speech_policy = speech_policy
        self.speech_probability = speech_probability
        self.seed = seed
        self.epoch = 0
        self.pad_to_multiple_of = pad_to_multiple_of
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.tokenizer.eos_token_id
        if self.pad_token_id is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token to pad with")
        self._prefix_ids = self._special_prefix()
        if encoder_cache is not None and getattr(encoder_cache, "identity", None) is None:
            raise ValueError("encoder_cache must be a spans.EncoderStatesCache bound to the model's encoder: "
                             "build it with EncoderStatesCache.for_model(model, processor, cache_dir)")
        self.encoder_cache = encoder_cache

    def set_epoch(self, epoch: int) -> None:
        """Re-draw the speech/text decisions for a new epoch (called by the trainer)."""
        self.epoch = int(epoch)

    # ----------------------------------------------------------------------------------------------- rendering
    def _special_prefix(self) -> list[int]:
        """Tokens the tokenizer puts before text by default (e.g. BOS), kept once at the document start."""
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        idx = next((i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain), 0)
        return list(full[:idx])

    def _tokenize_span(self, text: str, index: int) -> list[int]:
        if index > 0 and text and not text[0].isspace():
            text = " " + text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.audio_token_id in ids:
            raise ValueError("a text span contains the audio placeholder token "
                             f"{self.processor.audio_token!r} but the span has no audio to fill it")
        return list(ids)

    def _decide_heard(self, doc_id: str, spans: list[dict]) -> list[bool]:
        rng = random.Random(_stable_seed(self.seed, self.epoch, doc_id))
        heard, previous = [], rng.random() < 0.5  # random parity for the first span under "alternate"
        for span in spans:
            has_audio = span.get("audio") is not None
            if not has_audio:
                choice = False
            elif self.speech_policy == "random":
                choice = rng.random() < self.speech_probability
            else:
                eligible = not previous if self.speech_policy == "alternate" else True
                choice = eligible and rng.random() < self.speech_probability
            heard.append(choice)
            previous = choice if has_audio else False
        if heard and all(heard):  # something must stay text, or nothing would be distilled
            heard[-1] = False
        return heard

    def _heard(self, document: dict, doc_id: str, spans: list[dict]) -> list[bool]:
        return [False] * len(spans) if document.get("replay") else self._decide_heard(doc_id, spans)

    def heard_audio(self, document: dict) -> list[Any]:
        """The audio of every span the student hears in `document` at the current epoch: the clips `render` looks
        up in the encoder cache (precomputed states given in the document are left out)."""
        spans = document.get("spans") or []
        heard = self._heard(document, str(document.get("id", "")), spans)
        return [span["audio"] for span, is_heard in zip(spans, heard)
                if is_heard and not (isinstance(span["audio"], dict) and "encoder_states" in span["audio"])]

    def _clip(self, audio: Any) -> tuple[Any, int]:
        """Returns (clip, number of placeholders)."""
        if isinstance(audio, dict) and "encoder_states" in audio:
            return self._precomputed(audio["encoder_states"])
        wave = load_audio(audio, sampling_rate=SAMPLING_RATE)  # a bare array is taken as 16 kHz
        cached = self.encoder_cache.load(wave) if self.encoder_cache is not None else None
        states = cached.single_chunk_states() if cached is not None else None
        if states is not None:
            return self._precomputed(states)
        return wave, audio_token_count(self.processor, len(wave))

    def _precomputed(self, states) -> tuple[np.ndarray, int]:
        states = np.asarray(states, dtype=np.float32)
        if states.ndim != 2 or states.shape[0] == 0:
            raise ValueError(f"encoder_states must be a non-empty [T, D] array, got shape {states.shape}")
        return states, audio_token_count_from_states(self.processor, states.shape[0])

    def render(self, document: dict) -> RenderedDocument:
        """Render one document on both sides (unpadded)."""
        if not isinstance(document, dict):
            raise ValueError(f"a document must be a dict, got {type(document).__name__}")
        doc_id = str(document.get("id", ""))
        if "spans" in document:
            spans = document["spans"]
        elif "text" in document:
            spans = [{"text": document["text"], "audio": None}]
        else:
            raise ValueError(f"document {doc_id!r} has neither 'spans' nor 'text'")
        if not spans:
            raise ValueError(f"document {doc_id!r} has no spans")
        for i, span in enumerate(spans):
            if not isinstance(span, dict) or not isinstance(span.get("text"), str):
                raise ValueError(f"document {doc_id!r} span {i} needs a 'text' string")
        heard = self._heard(document, doc_id, spans)

        student, teacher = list(self._prefix_ids), list(self._prefix_ids)
        pairs, clips, kept_heard = [], [], []
        limit = self.max_length
        for i, span in enumerate(spans):
            text_ids = self._tokenize_span(span["text"], i)
            clip = None
            if heard[i]:
                clip, n_placeholders = self._clip(span["audio"])
                clip = (clip, span["audio"])
                student_part = [self.audio_token_id] * n_placeholders
            else:
                student_part = text_ids
            if limit is not None and (len(student) + len(student_part) > limit or len(teacher) + len(text_ids) > limit):
                if i > 0 or heard[i]:
                    if i == 0:  # a first spoken span that does not fit: read it instead, truncated below
                        heard[i], student_part, clip = False, text_ids, None
                    else:
                        break
                room = limit - max(len(student), len(teacher))
                text_ids = student_part = text_ids[:max(room, 0)]
            s0, t0 = len(student), len(teacher)
            student.extend(student_part)
            teacher.extend(text_ids)
            kept_heard.append(heard[i])
            if clip is not None:
                clips.append(clip)
            else:
                pairs.extend((s0 + k - 1, t0 + k - 1) for k in range(len(text_ids)) if s0 + k >= 1)
        if not pairs:
            raise ValueError(f"document {doc_id!r} has no text token to distill (all spans heard, or too short)")
        return RenderedDocument(student, teacher, pairs, clips, kept_heard)

    # ------------------------------------------------------------------------------------------------ batching
    def _pad(self, rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        length = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(rows), length), value, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        offsets = []
        for b, row in enumerate(rows):
            off = length - len(row) if self.padding_side == "left" else 0
            ids[b, off:off + len(row)] = torch.tensor(row, dtype=torch.long)
            mask[b, off:off + len(row)] = 1
            offsets.append(off)
        return ids, mask, offsets

    def __call__(self, documents: list[dict]) -> dict[str, torch.Tensor]:
        if not documents:
            raise ValueError("cannot collate an empty list of documents")
        rendered = [self.render(d) for d in documents]
        input_ids, attention_mask, s_off = self._pad([r.student_ids for r in rendered], self.pad_token_id)
        teacher_ids, teacher_mask, t_off = self._pad([r.teacher_ids for r in rendered], self.pad_token_id)

        k_max = max(len(r.pairs) for r in rendered)
        student_positions = torch.zeros((len(rendered), k_max), dtype=torch.long)
        teacher_positions = torch.zeros((len(rendered), k_max), dtype=torch.long)
        distill_mask = torch.zeros((len(rendered), k_max), dtype=torch.bool)
        labels = torch.full_like(input_ids, -100)
        for b, r in enumerate(rendered):
            pairs = torch.tensor(r.pairs, dtype=torch.long)
            sp, tp = pairs[:, 0] + s_off[b], pairs[:, 1] + t_off[b]
            student_positions[b, :len(pairs)], teacher_positions[b, :len(pairs)] = sp, tp
            distill_mask[b, :len(pairs)] = True
            if not torch.equal(input_ids[b, sp + 1], teacher_ids[b, tp + 1]):
                raise AssertionError(f"distilled tokens differ between student and teacher in document {b}")
            labels[b, sp + 1] = input_ids[b, sp + 1]

        batch = {
            "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "teacher_input_ids": teacher_ids, "teacher_attention_mask": teacher_mask,
            "student_positions": student_positions, "teacher_positions": teacher_positions,
            "distill_mask": distill_mask,
        }
        batch.update(self._audio_inputs([c for r in rendered for c in r.clips]))
        n_placeholders = int((input_ids == self.audio_token_id).sum())
        expected = sum(int((torch.tensor(r.student_ids) == self.audio_token_id).sum()) for r in rendered)
        if n_placeholders != expected or (n_placeholders > 0 and not any(r.clips for r in rendered)):
            raise ValueError(f"batch has {n_placeholders} audio placeholders but audio for {expected}")
        return batch

    def _audio_inputs(self, clips_and_sources: list[tuple[Any, Any]]) -> dict[str, torch.Tensor]:
        if not clips_and_sources:
            return {}
        clips = [c for c, _ in clips_and_sources]
        precomputed = [c.ndim == 2 for c in clips]
        if any(precomputed) and not all(precomputed):
            sources = [s for _, s in clips_and_sources]
            if any(isinstance(s, dict) and "encoder_states" in s for s in sources):
                raise ValueError("a batch mixes raw audio and precomputed encoder_states; use one kind per dataset")
            # some clips were cached, some not: use raw audio for all (same placeholder counts for 1-chunk clips)
            clips = [load_audio(s, sampling_rate=SAMPLING_RATE) if c.ndim == 2 else c for c, s in clips_and_sources]
            precomputed = [False] * len(clips)
        if not all(precomputed):
            features = self.processor.extract_audio_features(list(clips))
            return {"input_features": features["input_features"],
                    "input_features_mask": features["input_features_mask"]}
        dims = {c.shape[1] for c in clips}
        if len(dims) != 1:
            raise ValueError(f"encoder_states have different widths {sorted(dims)}")
        t_max = max(c.shape[0] for c in clips)
        states = torch.zeros((len(clips), t_max, dims.pop()), dtype=torch.float32)
        mask = torch.zeros((len(clips), t_max), dtype=torch.long)
        for i, c in enumerate(clips):
            states[i, :c.shape[0]] = torch.from_numpy(c)
            mask[i, :c.shape[0]] = 1
        return {"audio_encoder_states": states, "audio_encoder_mask": mask}
