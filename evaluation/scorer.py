"""Few-shot log-likelihood multiple-choice scoring (lm-eval-harness style), text and speech prompts.

For every item the model reads the prompt once (the shared prefix), the resulting KV cache is repeated over the
choices, and all choices are scored as one batch continuing from that cache. `share_prefix=False` recomputes the
prefix for each choice (the reference the fast path is tested against, and the baseline of
benchmarks/eval_speed.py).

Length normalization (`normalization=`):
  * "chars" (default, lm-eval-harness `acc_norm`): sum of the choice's token log-probs / number of characters of
    the choice text (without the leading space delimiter);
  * "tokens": / number of choice tokens;
  * "none" (lm-eval-harness `acc`): the plain sum.
Raw sums and both lengths are kept in `ChoiceScores`, so any normalization can be recomputed afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from modeling_salad.processing_salad import AUDIO_TOKEN

from .prompts import FewShotSampler, fit_shots, format_continuation, format_query, join_prompt, validate_item

NORMALIZATIONS = ("chars", "tokens", "none")


def check_normalization(normalization: str) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    return normalization


@dataclass
class ChoiceScores:
    """Log-likelihoods of one item's choices. `logprobs[i]` = sum of log p(choice i tokens | prompt)."""

    item_id: str
    answer: int
    logprobs: list[float]
    num_tokens: list[int]
    num_chars: list[int]
    num_shots: int = 0
    prompt_tokens: int = 0
    truncated: bool = False
    extra: dict = field(default_factory=dict)

    def normalized(self, normalization: str = "chars") -> list[float]:
        check_normalization(normalization)
        if normalization == "none":
            return list(self.logprobs)
        lengths = self.num_chars if normalization == "chars" else self.num_tokens
        return [lp / max(length, 1) for lp, length in zip(self.logprobs, lengths)]

    def prediction(self, normalization: str = "chars") -> int:
        scores = self.normalized(normalization)
        return max(range(len(scores)), key=lambda i: (scores[i], -i))  # ties -> first choice, deterministic

    def correct(self, normalization: str = "chars") -> bool:
        return self.prediction(normalization) == self.answer

    def to_dict(self, normalization: str = "chars") -> dict:
        return {
            "id": self.item_id,
            "answer": self.answer,
            "prediction": self.prediction(normalization),
            "correct": self.correct(normalization),
            "logprobs": self.logprobs,
            "num_tokens": self.num_tokens,
            "num_chars": self.num_chars,
            "num_shots": self.num_shots,
            "prompt_tokens": self.prompt_tokens,
            "truncated": self.truncated,
            **self.extra,
        }


def _model_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _pad_id(model) -> int:
    for config in (getattr(model, "config", None), getattr(getattr(model, "config", None), "text_config", None)):
        pad = getattr(config, "pad_token_id", None) if config is not None else None
        if isinstance(pad, int):
            return pad
    return 0  # any valid id: padded positions come after the real tokens and are never read


@torch.no_grad()
def continuation_logprobs(
    model,
    prefix_ids: torch.Tensor,
    continuations: Sequence[Sequence[int]],
    prefix_kwargs: dict | None = None,
    share_prefix: bool = True,
) -> list[float]:
    """Sum of log p(continuation tokens | prefix) for each continuation (see `score_continuations`)."""
    return [logprob for logprob, _ in score_continuations(model, prefix_ids, continuations, prefix_kwargs, share_prefix)]


@torch.no_grad()
def score_continuations(
    model,
    prefix_ids: torch.Tensor,
    continuations: Sequence[Sequence[int]],
    prefix_kwargs: dict | None = None,
    share_prefix: bool = True,
) -> list[tuple[float, bool]]:
    """(sum of log p(continuation tokens | prefix), whether greedy decoding yields exactly them) per continuation.

    Args:
        model: a causal LM (any HF `*ForCausalLM`, or `SaladForCausalLM`) returning `.logits`.
        prefix_ids: `[1, P]` token ids of the prompt (P >= 1).
        continuations: token id lists, each non-empty.
        prefix_kwargs: extra model inputs that belong to the prefix only (audio features / encoder states).
        share_prefix: run the prefix once and continue every choice from its (repeated) KV cache; False recomputes
            prefix + choice per choice.
    Returns:
        one (log-likelihood, is_greedy) pair per continuation (lm-eval-harness' loglikelihood answer).
    """
    if prefix_ids.dim() != 2 or prefix_ids.shape[0] != 1 or prefix_ids.shape[1] == 0:
        raise ValueError(f"prefix_ids must have shape [1, P>0], got {tuple(prefix_ids.shape)}.")
    if not continuations or any(len(c) == 0 for c in continuations):
        raise ValueError("Every continuation needs at least one token.")
    prefix_kwargs = prefix_kwargs or {}
    device = prefix_ids.device
    if not share_prefix:
        return [_full_sequence_score(model, prefix_ids, list(c), prefix_kwargs) for c in continuations]

    output = model(input_ids=prefix_ids, use_cache=True, logits_to_keep=1, **prefix_kwargs)
    first_logprobs = torch.log_softmax(output.logits[0, -1].float(), dim=-1)
    first_greedy = int(first_logprobs.argmax())
    scores = [(float(first_logprobs[c[0]]), c[0] == first_greedy) for c in continuations]
    longest = max(len(c) for c in continuations)
    if longest == 1:
        return scores
    cache = _model_cache(output)
    if cache is None:
        raise ValueError(f"{type(model).__name__} returned no KV cache; use share_prefix=False.")
    cache.batch_repeat_interleave(len(continuations))
    pad = _pad_id(model)
    # Feed tokens 0..L-2 of every (right-padded) continuation; position j predicts token j+1. Right padding is
    # harmless under causal attention: padded positions sit after every real token and are never read.
    rows = [list(c[:-1]) + [pad] * (longest - len(c)) for c in continuations]
    inputs = torch.tensor(rows, dtype=torch.long, device=device)
    logits = model(input_ids=inputs, cache=cache, use_cache=True,
                   **_continued_mask_and_positions(output, len(continuations), inputs.shape[1])).logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    for row, cont in enumerate(continuations):
        if len(cont) > 1:
            targets = torch.tensor(cont[1:], dtype=torch.long, device=device)
            rest = logprobs[row, : len(cont) - 1]
            total, greedy = scores[row]
            greedy = greedy and bool((rest.argmax(-1) == targets).all())
            scores[row] = (total + float(rest.gather(-1, targets[:, None]).sum()), greedy)
    return scores


def _continued_mask_and_positions(prefix_output, rows: int, length: int) -> dict:
    """The attention mask and positions that continue a prefix whose model hid some of its positions (a SALAD
    output carrying `attention_mask`/`position_ids`); {} for any other model, which numbers positions itself."""
    mask = getattr(prefix_output, "attention_mask", None)
    if mask is None:
        return {}
    mask = torch.cat([mask, mask.new_ones(mask.shape[0], length)], dim=1).repeat_interleave(rows, dim=0)
    last = prefix_output.position_ids[:, -1:]
    positions = last + 1 + torch.arange(length, device=last.device)[None, :]
    return {"attention_mask": mask, "position_ids": positions.repeat_interleave(rows, dim=0)}


def _full_sequence_score(model, prefix_ids, continuation, prefix_kwargs) -> tuple[float, bool]:
    cont = torch.tensor([continuation], dtype=torch.long, device=prefix_ids.device)
    ids = torch.cat([prefix_ids, cont], dim=1)
    logits = model(input_ids=ids, use_cache=False, **prefix_kwargs).logits.float()
    prefix_len = prefix_ids.shape[1]
    logprobs = torch.log_softmax(logits[0, prefix_len - 1 : -1], dim=-1)
    greedy = bool((logprobs.argmax(-1) == cont[0]).all())
    return float(logprobs.gather(-1, cont[0][:, None]).sum()), greedy


def model_context_length(model, tokenizer=None, max_length: int | None = 2048) -> int:
    """The context budget: `max_length` capped by the model's position limit (and the tokenizer's, if set)."""
    limits = [max_length] if max_length else []
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        value = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            limits.append(value)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 10**8:
        limits.append(model_max)
    if not limits:
        raise ValueError("No context length known: pass max_length.")
    return min(limits)


class MultipleChoiceScorer:
    """Scores MC items with one model, as text or as speech.

    Args:
        model: any HF causal LM, or `SaladForCausalLM` (text prompts need no audio; speech prompts need `processor`).
        tokenizer: the model's tokenizer (for SALAD: `processor.tokenizer`).
        sampler: few-shot sampler (`FewShotSampler(pool, num_fewshot=0)` for zero-shot).
        max_length: context budget in tokens (prompt + longest choice never exceed it; also capped by the model).
        share_prefix: compute the prompt once per item (default) or once per choice.
        audio_token: the placeholder string used in speech prompts (SaladProcessor.audio_token).
        store: a `ScoreStore` keeping text-prompt log-likelihoods on disk (speech prompts are never stored).
    """

    def __init__(
        self,
        model,
        tokenizer,
        sampler: FewShotSampler,
        max_length: int | None = 2048,
        share_prefix: bool = True,
        audio_token: str = AUDIO_TOKEN,
        store=None,
    ):
        self.model = model
        self.store = store
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.max_length = model_context_length(model, tokenizer, max_length)
        self.share_prefix = share_prefix
        self.audio_token = audio_token

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def _choice_ids(self, item: dict) -> list[list[int]]:
        return [self._encode(format_continuation(choice), add_special_tokens=False) for choice in item["choices"]]

    def _logprobs(self, prefix_ids, choice_ids, prefix_kwargs) -> list[float]:
        ids = torch.tensor([prefix_ids], dtype=torch.long, device=self.device)
        if self.store is None or prefix_kwargs:
            return continuation_logprobs(self.model, ids, choice_ids, prefix_kwargs, self.share_prefix)
        from .score_store import model_identity  # weights_digest memoizes, so this is cheap per item

        parts = [model_identity(self.model), self.share_prefix, list(prefix_ids), [list(c) for c in choice_ids]]
        logprobs = self.store.get("loglikelihood", parts)
        if logprobs is None:
            logprobs = continuation_logprobs(self.model, ids, choice_ids, prefix_kwargs, self.share_prefix)
            self.store.put("loglikelihood", parts, logprobs)
        return logprobs

    def _score(self, item, prefix_ids, choice_ids, prefix_kwargs, num_shots, truncated) -> ChoiceScores:
        logprobs = self._logprobs(prefix_ids, choice_ids, prefix_kwargs)
        return ChoiceScores(
            item_id=str(item["id"]),
            answer=int(item["answer"]),
            logprobs=logprobs,
            num_tokens=[len(c) for c in choice_ids],
            num_chars=[len(choice.strip()) for choice in item["choices"]],
            num_shots=num_shots,
            prompt_tokens=len(prefix_ids),
            truncated=truncated,
        )

    def text_prompt(self, item: dict, query_text: str | None = None) -> tuple[list[int], list[dict], bool]:
        """(prefix token ids, shots used, truncated) of the text prompt for `item`.

        `query_text` replaces the question (e.g. an ASR transcript). Shots are dropped until prompt + longest choice
        fit `max_length`; a zero-shot prompt that still does not fit keeps its last tokens (lm-eval-harness).
        """
        validate_item(item)
        longest = max(len(c) for c in self._choice_ids(item))
        query_item = item if query_text is None else {**item, "question": query_text, "context": None}
        query = format_query(query_item)
        count = lambda prompt: len(self._encode(prompt, add_special_tokens=True))
        try:
            shots, prompt, _ = fit_shots(
                self.sampler.sample(item), lambda s: join_prompt(s, query), count, longest, self.max_length
            )
            return self._encode(prompt, add_special_tokens=True), shots, False
        except ValueError:
            if longest >= self.max_length:
                raise ValueError(f"Item {item['id']!r}: a choice alone exceeds the context of {self.max_length}.")
            return self._encode(query, add_special_tokens=True)[-(self.max_length - longest) :], [], True

    def speech_prompt(self, item: dict, num_placeholders: int) -> tuple[list[int], list[dict]]:
        """(prefix token ids with the clip's `num_placeholders` audio tokens, shots used) of the speech prompt."""
        validate_item(item)
        longest = max(len(c) for c in self._choice_ids(item))
        query = format_query(item, spoken_placeholder=self.audio_token)
        count = lambda prompt: len(self._encode(prompt, add_special_tokens=True)) + num_placeholders - 1
        try:
            shots, prompt, _ = fit_shots(
                self.sampler.sample(item), lambda s: join_prompt(s, query), count, longest, self.max_length
            )
        except ValueError as error:
            raise ValueError(f"Item {item['id']!r}: the spoken question does not fit the context. {error}") from None
        return self._expand_placeholder(self._encode(prompt, add_special_tokens=True), num_placeholders), shots

    def score_text(self, item: dict, query_text: str | None = None) -> ChoiceScores:
        """Score `item` with its question as text (`query_text`: see `text_prompt`)."""
        prefix_ids, shots, truncated = self.text_prompt(item, query_text)
        return self._score(item, prefix_ids, self._choice_ids(item), {}, len(shots), truncated)

    def score_speech(self, item: dict, audio_inputs: dict) -> ChoiceScores:
        """Score `item` with the question (and context) spoken.

        `audio_inputs`: `num_placeholders` (the clip's `<|audio|>` expansion, `processor.num_audio_tokens`) and
        either `input_features` + `input_features_mask` or `audio_encoder_states` + `audio_encoder_mask`
        (precomputed frozen-encoder outputs). Shots and choices stay text.
        """
        num_placeholders = int(audio_inputs["num_placeholders"])
        model_inputs = {k: v.to(self.device) for k, v in audio_inputs.items() if k != "num_placeholders"}
        prefix_ids, shots = self.speech_prompt(item, num_placeholders)
        return self._score(item, prefix_ids, self._choice_ids(item), model_inputs, len(shots), False)

    def _expand_placeholder(self, ids: list[int], num_placeholders: int) -> list[int]:
        return expand_audio_placeholder(ids, self.tokenizer, num_placeholders, self.audio_token)


def expand_audio_placeholder(ids: list[int], tokenizer, num_placeholders: int, audio_token: str = "<|audio|>"):
    """`ids` with its single `audio_token` repeated `num_placeholders` times (the clip's embedding count)."""
    audio_id = tokenizer.convert_tokens_to_ids(audio_token)
    positions = [i for i, token in enumerate(ids) if token == audio_id]
    if len(positions) != 1:
        raise ValueError(
            f"The speech prompt must hold exactly one {audio_token!r} token after tokenization, found "
            f"{len(positions)}; is it registered as a special token of the tokenizer?"
        )
    at = positions[0]
    return ids[:at] + [audio_id] * num_placeholders + ids[at + 1 :]


def accuracy_from_scores(scores: Sequence[ChoiceScores], normalization: str = "chars") -> float:
    """Accuracy in percent (NaN for no items)."""
    if not scores:
        return math.nan
    return 100.0 * sum(s.correct(normalization) for s in scores) / len(scores)
