"""lm-evaluation-harness model `salad`: any lm-eval multiple-choice task, with the question spoken.

    salad-lm-eval --model salad --model_args pretrained=CKPT,mode=speech,tts=piper --tasks arc_easy --num_fewshot 5

`salad-lm-eval` takes exactly `lm_eval`'s arguments: it registers this model in lm-eval's model registry
(`lm_eval.api.registry.register_model("salad")`) and runs lm-eval's own CLI, so the task configs, few-shot
sampling, metrics and output files are lm-eval's. (lm-eval 0.4.13 finds models only in its own registry, not
through plugins; from Python, `import evaluation.lm_eval_model` is enough before `lm_eval.simple_evaluate`.)

Model arguments:
  pretrained   SALAD folder or Hub id.
  mode         speech (default): the spoken part of each context (rule below) is synthesized, and the model hears
               it in place of the text; text: the whole context is read as text (the SALAD's own LLM).
  tts          TTS voice pool BACKEND[:VOICE][,...] (default piper); with several voices, each spoken text gets one
               by a stable hash of the text. Clips are cached on disk keyed by (backend, voice, text), shared with
               salad-eval (`tts_cache`, default $SALAD_CACHE/eval-tts).
  delimiter    the few-shot delimiter of the tasks (default "\\n\\n", lm-eval's default `fewshot_delimiter`).
  max_length   context budget in tokens (default: the model's limit); device, dtype, trust_remote_code.

The spoken part (`split_spoken_context`): the context's last query is the text after its last `delimiter` (the
whole context when there is none), i.e. the question of the last shot, which is the item being scored; shots
and any description before it stay written. Inside that query, a final line (from the last newline on, e.g.
"\\nAnswer:") stays written as the answer cue, and a leading one-word label ("Question:", "Q:") stays written
without the space after it; everything between is spoken. With salad-eval's prompt format
(`Question: {question}\\nAnswer:`) this is exactly salad-eval's speech prompt. Choices are scored as text.

Generation requests (`generate_until`) work the same way: the spoken prompt, greedy text out, cut at the
request's `until` strings. `loglikelihood_rolling` (perplexity tasks) is not supported.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

import lm_eval.models  # noqa: F401  (lm-eval's own models: it fills its registry lazily only while it is empty)
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from spans import EncoderStatesCache

from .audio import SpokenQuestions, speech_inputs
from .loading import load_salad
from .scorer import expand_audio_placeholder, model_context_length, score_continuations

MODES = ("speech", "text")
DEFAULT_DELIMITER = "\n\n"
_LABEL = re.compile(r"\s*\w+:[ \t]*")


@dataclass(frozen=True)
class SpokenContext:
    """A context cut into the written text before the spoken part, the spoken text, and the written text after."""

    before: str
    spoken: str
    after: str

    def prompt(self, placeholder: str) -> str:
        return self.before + placeholder + self.after


def split_spoken_context(context: str, delimiter: str = DEFAULT_DELIMITER) -> SpokenContext:
    """Cut `context` by the rule of the module docstring: the last query's text is spoken, its one-word label
    and its final (answer-cue) line stay written. Raises ValueError when nothing is left to speak."""
    if not delimiter:
        raise ValueError("delimiter must be a non-empty string (the tasks' fewshot_delimiter).")
    last = context.rfind(delimiter)
    start = 0 if last < 0 else last + len(delimiter)
    query = context[start:]
    cue_at = query.rstrip().rfind("\n")
    body, cue = (query[:cue_at], query[cue_at:]) if cue_at > 0 else (query, "")
    label = _LABEL.match(body)
    label_text = label.group(0).rstrip(" \t") if label else ""
    rest = body[label.end():] if label else body
    spoken = rest.strip()
    if not spoken:
        raise ValueError(f"Nothing to speak in the context's last query {query!r} (rule: text after the last "
                         f"{delimiter!r}, without its label and answer-cue line).")
    lead = "" if label else rest[: len(rest) - len(rest.lstrip())]
    trail = rest[len(rest.rstrip()):]
    return SpokenContext(context[:start] + label_text + lead, spoken, trail + cue)


@dataclass
class _Encoded:
    """One loglikelihood request in tokens, with the audio inputs of its spoken part (None for text)."""

    context_ids: list[int]
    continuation_ids: list[int]
    audio: dict | None = None
    clip_key: str | None = None


@register_model("salad")
class SaladLM(TemplateLM):
    """lm-eval `LM` for a SALAD checkpoint (see the module docstring for the arguments and the spoken rule)."""

    def __init__(self, pretrained: str, mode: str = "speech", tts: str = "piper", tts_cache: str | None = None,
                 delimiter: str = DEFAULT_DELIMITER, max_length: int | None = None, device: str | None = None,
                 dtype: str | None = None, trust_remote_code: bool = False, share_prefix: bool = True,
                 batch_size=None, max_batch_size=None, max_gen_toks: int = 256, add_bos_token: bool | None = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"salad: mode must be one of {MODES}, got {mode!r}.")
        if not delimiter:
            raise ValueError("salad: delimiter must be a non-empty string.")
        self.mode, self.delimiter, self.share_prefix = mode, delimiter, bool(share_prefix)
        self.max_gen_toks, self.add_bos_token = int(max_gen_toks), add_bos_token
        self.model, self.processor = load_salad(pretrained, device, dtype, bool(trust_remote_code))
        self.tokenizer = self.processor.tokenizer
        self.max_length = model_context_length(self.model, self.tokenizer, max_length)
        self.spoken = SpokenQuestions(str(tts), tts_cache) if mode == "speech" else None
        self.encoder_cache = EncoderStatesCache()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        if add_special_tokens is None:
            add_special_tokens = self.add_bos_token
        bos = self.tokenizer.bos_token
        if add_special_tokens is None and bos and string.startswith(bos):
            add_special_tokens = False  # the text already starts with BOS
        special = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return list(self.tokenizer(string, **special)["input_ids"])

    # ------------------------------------------------------------------ speech prompts
    def spoken_prompt(self, context: str) -> tuple[str, dict, str]:
        """(prompt with one audio placeholder, the clip's audio inputs, clip key) for `context`."""
        parts = split_spoken_context(context, self.delimiter)
        item = {"id": parts.spoken, "question": parts.spoken}
        key = self.spoken.clip_key(item)
        audio = speech_inputs(self.encoder_cache, self.spoken.clip(item), self.model, self.processor)
        return parts.prompt(self.processor.audio_token), audio, key

    def _expand(self, ids: list[int], audio: dict) -> list[int]:
        return expand_audio_placeholder(ids, self.tokenizer, audio["num_placeholders"], self.processor.audio_token)

    # ------------------------------------------------------------------ loglikelihood
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        if self.mode == "text":
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        encoded = []
        for context, continuation in tqdm([r.args for r in requests], desc="Speaking contexts",
                                          disable=disable_tqdm):
            prompt, audio, key = self.spoken_prompt(context)
            context_ids, continuation_ids = self._encode_pair(prompt, continuation)
            encoded.append(_Encoded(self._expand(context_ids, audio), continuation_ids, audio, key))
        return self._score(encoded, disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        return self._score([_Encoded(list(ctx), list(cont)) for _, ctx, cont in requests], disable_tqdm)

    def _fit(self, request: _Encoded) -> list[int]:
        """The context ids that fit with the continuation: cut from the left, as lm-eval's `hf` model does; a
        spoken prompt is never cut into its audio placeholders."""
        context, continuation = request.context_ids, request.continuation_ids
        if len(continuation) > self.max_length:
            raise ValueError(f"salad: a continuation of {len(continuation)} tokens exceeds max_length "
                             f"{self.max_length}.")
        overflow = len(context) + len(continuation) - (self.max_length + 1)
        if overflow <= 0:
            return context
        kept = context[overflow:]
        if request.audio is not None and kept.count(self.model.config.audio_token_id) != request.audio[
                "num_placeholders"]:
            raise ValueError(f"salad: the spoken prompt ({len(context)} tokens) does not fit max_length "
                             f"{self.max_length} with its continuation; lower num_fewshot or raise max_length.")
        return kept

    def _score(self, encoded: list[_Encoded], disable_tqdm: bool) -> list[tuple[float, bool]]:
        """Requests sharing a (fitted) context and clip are scored together from one prefix pass."""
        groups: dict[tuple, list[int]] = {}
        prefixes = [self._fit(request) for request in encoded]
        for index, (request, prefix) in enumerate(zip(encoded, prefixes)):
            groups.setdefault((tuple(prefix), request.clip_key), []).append(index)
        results: list = [None] * len(encoded)
        for (prefix, _), indices in tqdm(groups.items(), desc="Scoring", disable=disable_tqdm):
            audio = encoded[indices[0]].audio
            prefix_kwargs = {k: v.to(self.device) for k, v in audio.items() if k != "num_placeholders"} if audio else {}
            ids = torch.tensor([list(prefix)], dtype=torch.long, device=self.device)
            scores = score_continuations(self.model, ids, [encoded[i].continuation_ids for i in indices],
                                         prefix_kwargs, self.share_prefix)
            for index, score in zip(indices, scores):
                results[index] = score
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError("salad: loglikelihood_rolling (perplexity tasks) is not supported; score the base "
                                  "LLM with `--model hf` for those.")

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, with do_sample) answers to the spoken (or written) prompt, cut at `until`."""
        return [self._generate_one(context, dict(gen_kwargs or {}))
                for context, gen_kwargs in tqdm([r.args for r in requests], desc="Generating", disable=disable_tqdm)]

    @torch.no_grad()
    def _generate_one(self, context: str, gen_kwargs: dict) -> str:
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new_tokens = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
        sampling = {k: gen_kwargs[k] for k in ("temperature", "top_p", "top_k") if k in gen_kwargs}
        do_sample = bool(gen_kwargs.get("do_sample", False))
        inputs = self._generation_inputs(context, max_new_tokens)
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                     **(sampling if do_sample else {}))
        text = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for stop in until:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text

    def _generation_inputs(self, context: str, max_new_tokens: int) -> dict:
        budget = self.max_length - max_new_tokens
        if self.mode == "text":
            ids, audio = self.tok_encode(context)[-budget:], None
        else:
            prompt, audio, _ = self.spoken_prompt(context)
            ids = self._expand(self.tok_encode(prompt), audio)
            if len(ids) > budget:
                raise ValueError(f"salad: the spoken prompt ({len(ids)} tokens) plus {max_new_tokens} new tokens "
                                 f"exceeds max_length {self.max_length}.")
        inputs = {"input_ids": torch.tensor([ids], dtype=torch.long, device=self.device)}
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        if audio is not None:
            inputs.update({k: v.to(self.device) for k, v in audio.items() if k != "num_placeholders"})
        return inputs


def main(argv=None) -> int:
    """`salad-lm-eval`: lm-eval's CLI with the `salad` model registered (same arguments as `lm_eval`)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["salad-lm-eval", *(sys.argv[1:] if argv is None else list(argv))]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
