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
    if not share_prefix:
        return [_full_sequence_score(model, prefix_ids, list(c), prefix_kwargs or {}) for c in continuations]
    return score_continuations_batch(model, [prefix_ids[0].tolist()], [continuations], prefix_kwargs)[0]


@torch.no_grad()
def score_continuations_batch(
    model,
    prefixes: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[Sequence[int]]],
    prefix_kwargs: dict | None = None,
) -> list[list[tuple[float, bool]]]:
    """`score_continuations` for several prompts at once: one prefix pass and one continuation pass in all.

    On a CPU a forward pass of a small LM costs nearly as much for one short prompt as for eight, so scoring items
    together is what makes evaluation fast; the results equal one-by-one scoring up to float rounding.

    Args:
        model: a causal LM, or `SaladForCausalLM`.
        prefixes: B prompts' token ids (each non-empty); they are left-padded into one `[B, P_max]` batch.
        continuations: per prompt, its continuations' token ids (each non-empty).
        prefix_kwargs: model inputs of the whole batch's prefixes (the audio states of the B prompts' clips, in
            prompt order).
    Returns:
        per prompt, one (log-likelihood, is_greedy) pair per continuation.
    """
    if not prefixes or len(prefixes) != len(continuations) or any(len(p) == 0 for p in prefixes):
        raise ValueError("Need as many non-empty prefixes as continuation lists.")
    if any(not conts or any(len(c) == 0 for c in conts) for conts in continuations):
        raise ValueError("Every continuation needs at least one token.")
    device, pad, width = next(model.parameters()).device, _pad_id(model), max(len(p) for p in prefixes)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prefixes], dtype=torch.long, device=device)
    mask = (torch.arange(width, device=device)[None, :] >= torch.tensor([width - len(p) for p in prefixes],
                                                                        device=device)[:, None]).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    output = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                   **(prefix_kwargs or {}))
    first = torch.log_softmax(output.logits[:, -1].float(), dim=-1)
    rows = [(item, list(c)) for item, conts in enumerate(continuations) for c in conts]
    scores = [(float(first[item, c[0]]), c[0] == int(first[item].argmax())) for item, c in rows]
    if max(len(c) for _, c in rows) > 1:
        # a SALAD model that hid audio slots returns the mask and positions it ran with; continue from those
        mask = output.attention_mask if getattr(output, "attention_mask", None) is not None else mask
        positions = output.position_ids if getattr(output, "position_ids", None) is not None else positions
        scores = _score_rest(model, _model_cache(output), rows, scores, mask, positions)
    grouped, start = [], 0
    for conts in continuations:
        grouped.append(scores[start:start + len(conts)])
        start += len(conts)
    return grouped


def _score_rest(model, cache, rows, scores, prefix_mask, prefix_positions) -> list[tuple[float, bool]]:
    """Add tokens 1.. of every continuation (`rows`: (prompt index, token ids)) to its first-token score, feeding
    tokens 0..L-2 of every right-padded continuation from the prompts' KV cache, repeated per continuation."""
    if cache is None:
        raise ValueError(f"{type(model).__name__} returned no KV cache; use share_prefix=False.")
    device, pad = prefix_mask.device, _pad_id(model)
    index = torch.tensor([item for item, _ in rows], dtype=torch.long, device=device)
    cache.batch_select_indices(index)
    length = max(len(c) for _, c in rows) - 1
    # Right padding is harmless under causal attention: padded positions sit after every real token, never read.
    inputs = torch.tensor([c[:-1] + [pad] * (length + 1 - len(c)) for _, c in rows], dtype=torch.long, device=device)
    mask = torch.cat([prefix_mask[index], prefix_mask.new_ones(len(rows), length)], dim=1)
    positions = prefix_positions[index, -1:] + 1 + torch.arange(length, device=device)[None, :]
    logits = model(input_ids=inputs, cache=cache, use_cache=True, attention_mask=mask, position_ids=positions).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for row, (_, cont) in enumerate(rows):
        if len(cont) > 1:
            targets = torch.tensor(cont[1:], dtype=torch.long, device=device)
            rest = logprobs[row, : len(cont) - 1]
            total, greedy = scores[row]
            greedy = greedy and bool((rest.argmax(-1) == targets).all())
            scores[row] = (total + float(rest.gather(-1, targets[:, None]).sum()), greedy)
    return scores


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

    def _logprobs(self, prefixes, choice_ids, prefix_kwargs) -> list[list[float]]:
        """Per prompt, its choices' log-likelihoods; text prompts are read from / written to the store."""
        if self.store is None or prefix_kwargs:
            return self._compute_logprobs(prefixes, choice_ids, prefix_kwargs)
        from .score_store import model_identity  # weights_digest memoizes, so this is cheap per item

        identity = model_identity(self.model)
        # Batched and one-by-one scores differ only by float rounding, so the batch is not part of the key.
        keys = [[identity, self.share_prefix, list(p), [list(c) for c in choices]]
                for p, choices in zip(prefixes, choice_ids)]
        found = [self.store.get("loglikelihood", key) for key in keys]
        missing = [i for i, logprobs in enumerate(found) if logprobs is None]
        if missing:
            computed = self._compute_logprobs([prefixes[i] for i in missing], [choice_ids[i] for i in missing], {})
            for i, logprobs in zip(missing, computed):
                self.store.put("loglikelihood", keys[i], logprobs)
                found[i] = logprobs
        return found

    def _compute_logprobs(self, prefixes, choice_ids, prefix_kwargs) -> list[list[float]]:
        if not self.share_prefix:
            return [continuation_logprobs(self.model, torch.tensor([p], device=self.device), choices, prefix_kwargs,
                                          share_prefix=False) for p, choices in zip(prefixes, choice_ids)]
        batch = score_continuations_batch(self.model, prefixes, choice_ids, prefix_kwargs)
        return [[logprob for logprob, _ in item] for item in batch]

    def _score(self, items, prompts, prefix_kwargs) -> list[ChoiceScores]:
        """`prompts`: per item (prefix ids, shots used, truncated)."""
        choice_ids = [self._choice_ids(item) for item in items]
        logprobs = self._logprobs([p for p, _, _ in prompts], choice_ids, prefix_kwargs)
        return [ChoiceScores(item_id=str(item["id"]), answer=int(item["answer"]), logprobs=item_logprobs,
                             num_tokens=[len(c) for c in choices],
                             num_chars=[len(choice.strip()) for choice in item["choices"]],
                             num_shots=len(shots), prompt_tokens=len(prefix), truncated=truncated)
                for item, item_logprobs, choices, (prefix, shots, truncated)
                in zip(items, logprobs, choice_ids, prompts)]

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
        return self.score_text_batch([item], [query_text])[0]

    def score_text_batch(self, items: Sequence[dict], query_texts: Sequence[str | None] | None = None
                         ) -> list[ChoiceScores]:
        """`score_text` for several items, scored together (`score_continuations_batch`)."""
        query_texts = [None] * len(items) if query_texts is None else list(query_texts)
        if len(query_texts) != len(items):
            raise ValueError(f"{len(items)} items but {len(query_texts)} query texts.")
        return self._score(items, [self.text_prompt(i, q) for i, q in zip(items, query_texts)], {})

    def score_speech(self, item: dict, audio_inputs: dict) -> ChoiceScores:
        """Score `item` with the question (and context) spoken.

        `audio_inputs`: `num_placeholders` (the clip's `<|audio|>` expansion, `processor.num_audio_tokens`) and
        either `input_features` + `input_features_mask` or `audio_encoder_states` + `audio_encoder_mask`
        (precomputed frozen-encoder outputs). Shots and choices stay text.
        """
        return self.score_speech_batch([item], [audio_inputs])[0]

    def score_speech_batch(self, items: Sequence[dict], audio_inputs: Sequence[dict]) -> list[ChoiceScores]:
        """`score_speech` for several items, their clips' inputs concatenated into one batch."""
        if len(audio_inputs) != len(items):
            raise ValueError(f"{len(items)} items but {len(audio_inputs)} audio inputs.")
        prompts = [(*self.speech_prompt(item, int(inputs["num_placeholders"])), False)
                   for item, inputs in zip(items, audio_inputs)]
        model_inputs = concat_audio_inputs([{k: v for k, v in inputs.items() if k != "num_placeholders"}
                                            for inputs in audio_inputs])
        return self._score(items, prompts, {k: v.to(self.device) for k, v in model_inputs.items()})

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


def concat_audio_inputs(inputs: Sequence[dict]) -> dict:
    """Several prompts' audio inputs (`audio_encoder_states [n, T, C]` + `audio_encoder_mask [n, T]`, or
    `input_features [n, M, L]` + `input_features_mask [n, L]`) as one batch: chunks concatenated in prompt order,
    the time axis zero-padded to the longest (the mask marks the real part)."""
    names = {tuple(sorted(i)) for i in inputs}
    if len(names) != 1:
        raise ValueError(f"The prompts' audio inputs differ in kind: {sorted(names)}; use one kind per batch.")
    out = {}
    for name in names.pop():
        tensors = [i[name] for i in inputs]
        time_axis = 1 if name in ("audio_encoder_states", "audio_encoder_mask", "input_features_mask") else -1
        longest = max(t.shape[time_axis] for t in tensors)
        padded = []
        for t in tensors:
            pad = [0, 0] * (t.dim() - 1 - time_axis % t.dim()) + [0, longest - t.shape[time_axis]]
            padded.append(torch.nn.functional.pad(t, pad))
        out[name] = torch.cat(padded, dim=0)
    return out
