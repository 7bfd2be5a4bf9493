"""Posterior front end (`adapter_type="posterior"`), a flat sibling of modeling_salad.py (remote-code safe).

Whisper's decoder reads each clip greedily, as for the transcript adapter. Teacher-forced on that transcript, it
then gives every slot a distribution over Whisper's content tokens; the slot's LLM input is the expectation, under
that distribution at a learnable temperature, of the LLM embeddings of each token's text (the vocabulary bridge
of `build_salad`). Every step is differentiable, so SALAD's distillation objective trains the Whisper decoder
itself: the projector owns the decoder, while the encoder stays frozen in `audio_tower`. Precedent: LegoSLM
(arXiv 2505.11352) feeds an LLM posterior-weighted sums of its embeddings.

As the temperature goes to 0 a slot becomes the bridged embedding of its greedy token, which is the transcript
adapter with a zero correction. `posterior_temperature=0` is that argmax mode exactly (no gradient reaches the
decoder).

Slot count: `ceil(encoder_frames / stack_factor)` per chunk, from the clip length alone (as the transcript adapter).
Precomputed form of a chunk (the trainer's and evaluator's encoder-state caches): `[T_window + S, d_model + 1]`
float32, the encoder's `T_window` frames (last channel 0) followed by one row per slot whose last channel holds the
greedy token id + 1 (0 = filler, past the transcript). The decoder cross-attends to the whole padded window it
was trained on, and the row count still gives the slot count (`rows - T_window`).
"""

import math
import re

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer
from transformers.models.whisper.modeling_whisper import WhisperDecoder

from .projectors import SaladProjector, register_projector
from .transcript_adapter import (bridge_embeddings, greedy_decode_slots, transcript_slots, vocabulary_bridge,
                                 whisper_suppress_tokens, whisper_transcribe_prompt)

POSTERIOR_PIECE_MODES = ("mean", "first", "spread")
POSTERIOR_FILLER_MODES = ("end", "start")
POSTERIOR_PIECE_ALIGNMENTS = ("start", "end")
NUMERAL = re.compile(r" ?[0-9]+")
WHISPER_WINDOW_FRAMES = 1500  # encoder frames of Whisper's 30 s window (every released Whisper)


def pack_posterior_states(encoder_states: torch.Tensor, token_ids: torch.Tensor, num_slots: torch.Tensor):
    """`[N, T, D]` window + `[N, S]` greedy tokens (-1 = none) -> states `[N, T + S, D + 1]`, mask `[N, T + S]`.

    The mask is True on the window and on each chunk's `num_slots` slot rows.
    """
    batch, window, width = encoder_states.shape
    slots = token_ids.shape[1]
    states = encoder_states.new_zeros(batch, window + slots, width + 1, dtype=torch.float32)
    states[:, :window, :width] = encoder_states.float()
    states[:, window:, width] = (token_ids + 1).float()
    mask = torch.arange(window + slots, device=states.device)[None, :] < (window + num_slots)[:, None]
    return states, mask


def unpack_posterior_states(states: torch.Tensor, mask: torch.Tensor, window: int):
    """Inverse of `pack_posterior_states`: `(encoder [N, T, D], token_ids [N, S], slot_mask [N, S])`."""
    if states.shape[1] <= window:
        raise ValueError(f"Posterior states need more than the {window} window rows (one per slot after them), "
                         f"got {states.shape[1]}; precompute them with `model.encode_audio`.")
    token_ids = states[:, window:, -1].round().long() - 1
    return states[:, :window, :-1], token_ids, mask[:, window:].bool()


def teacher_forced_logits(decoder: nn.Module, encoder_states: torch.Tensor, token_ids: torch.Tensor,
                          prompt_ids: list[int], eos_token_id: int) -> torch.Tensor:
    """Logits `[N, S, eos_token_id]` over Whisper's content tokens (ids below end-of-text) for every slot.

    Slot s is predicted from the prompt and tokens `< s`; missing tokens (-1) are fed as end-of-text, which only
    shapes the slots after them (causal attention), i.e. filler slots.
    """
    batch = token_ids.shape[0]
    prompt = torch.tensor(prompt_ids, dtype=torch.long, device=token_ids.device).expand(batch, -1)
    previous = token_ids[:, :-1].masked_fill(token_ids[:, :-1] < 0, eos_token_id)
    decoder_input = torch.cat([prompt, previous], dim=1)
    table = decoder.embed_tokens.weight
    hidden = decoder(input_ids=decoder_input, encoder_hidden_states=encoder_states.to(table.dtype),
                     use_cache=False).last_hidden_state[:, len(prompt_ids) - 1:]
    return hidden.float() @ table[:eos_token_id].float().T


def top_k_posterior(logits: torch.Tensor, temperature: torch.Tensor, top_k: int):
    """`[..., V]` logits -> `(weights [..., k], candidates [..., k])`: softmax(logits / temperature) renormalized
    over the `top_k` most likely tokens (`top_k=0`: all V)."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        candidates = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
        return torch.softmax(logits / temperature, dim=-1), candidates
    top = logits.topk(top_k, dim=-1)
    return torch.softmax(top.values / temperature, dim=-1), top.indices


def spread_piece_embeddings(weights: torch.Tensor, candidates: torch.Tensor, greedy: torch.Tensor,
                            bridge_ids: torch.Tensor, bridge_counts: torch.Tensor, text_embeddings: nn.Module,
                            align_end: bool = False):
    """One LLM input per LLM piece of each greedy token (`posterior_pieces="spread"`).

    `weights`/`candidates` `[R, k]` (the slot posterior), `greedy` `[R]` -> `(embeddings [P, H], owner [P],
    piece [P])`: the greedy token of row r has `max(count, 1)` pieces, and its j-th input is the expectation over the
    candidates of their j-th piece (a candidate with fewer pieces gives its last one; one with none gives 0). With
    `align_end` a candidate's pieces are counted from its last one instead, so that a candidate with more pieces
    offers its last ones (" 0" is a bare space and "0" to the LLM: "0" then fills the slot of a greedy " zero"). At
    temperature 0 this is the LLM's own tokenization of the transcript, piece by piece, either way.
    """
    sizes = bridge_counts[greedy].clamp(min=1)
    owner = torch.repeat_interleave(torch.arange(greedy.shape[0], device=greedy.device), sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    piece = torch.arange(owner.shape[0], device=greedy.device) - starts[owner]
    cand = candidates[owner]  # [P, k]
    cand_counts = bridge_counts[cand]
    wanted = piece[:, None] + (cand_counts - sizes[owner][:, None] if align_end else 0)
    index = torch.minimum(wanted.clamp(min=0), (cand_counts - 1).clamp(min=0))
    ids = bridge_ids[cand].gather(-1, index[..., None])[..., 0]
    embedded = text_embeddings(ids) * (cand_counts > 0)[..., None].to(text_embeddings.weight.dtype)
    return (weights[owner][..., None].to(embedded.dtype) * embedded).sum(-2), owner, piece


def place_in_slots(out: torch.Tensor, values: torch.Tensor, row: torch.Tensor, order: torch.Tensor,
                   slot_mask: torch.Tensor, fillers_first: bool) -> torch.Tensor:
    """Write `values [P, H]` (entry p is the `order[p]`-th input of chunk `row[p]`) into the real slots of `out
    [N, S, H]`, in order; what does not fit in a chunk's slots is dropped. The rest of the slots keep the filler,
    after the inputs (`fillers_first=False`) or before them, so that the transcript ends where the clip does."""
    real = slot_mask.sum(-1)
    keep = order < real[row]
    row, order, values = row[keep], order[keep], values[keep]
    if fillers_first:
        used = torch.bincount(row, minlength=out.shape[0])
        order = order + (real - used)[row]
    out[row, order] = values.to(out.dtype)
    return out


def order_within_rows(row: torch.Tensor, num_rows: int) -> torch.Tensor:
    """`[P]` chunk index of each input (sorted) -> `[P]` its rank among the inputs of its chunk."""
    per_row = torch.bincount(row, minlength=num_rows)
    return torch.arange(row.shape[0], device=row.device) - (torch.cumsum(per_row, 0) - per_row)[row]


def filler_embedding(text_tokenizer, text_embeddings: nn.Module | None, text: str) -> torch.Tensor:
    """The LLM input embedding of `text`, which must be one LLM token (the filler's start value)."""
    ids = text_tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"posterior_filler_text={text!r} is {len(ids)} tokens of the LLM's tokenizer; it must be "
                         "exactly one (e.g. ' ').")
    if text_embeddings is None:
        raise ValueError("posterior_filler_text needs the LLM's input embeddings (build the model with build_salad).")
    return text_embeddings.weight[ids[0]].detach()


def numeral_token_mask(tokenizer, num_tokens: int) -> torch.Tensor:
    """`[num_tokens]` float mask, 1 on the tokens whose text is one or more ASCII digits, with or without a leading
    space (" 3", "7", " 12")."""
    texts = tokenizer.batch_decode([[i] for i in range(num_tokens)])
    return torch.tensor([float(bool(NUMERAL.fullmatch(text))) for text in texts])


def suppress_mask(token_ids, num_tokens: int) -> torch.Tensor:
    """`[num_tokens]` float: -inf on the content tokens in `token_ids` (ids >= num_tokens are not content), else 0."""
    mask = torch.zeros(int(num_tokens))
    mask[[i for i in token_ids if 0 <= int(i) < num_tokens]] = float("-inf")
    return mask


def bridge_matrix(bridge_ids: torch.Tensor, bridge_counts: torch.Tensor, num_tokens: int, llm_vocab: int):
    """Sparse `[llm_vocab, num_tokens]` matrix M with `M @ p` = the LLM-vocabulary mixture of a Whisper posterior p
    (each token's mass split evenly over its pieces): `(M @ p).T @ E` is the full-vocabulary expectation."""
    ids, counts = bridge_ids[:num_tokens], bridge_counts[:num_tokens]
    keep = torch.arange(ids.shape[1], device=ids.device)[None, :] < counts[:, None]
    token, _ = keep.nonzero(as_tuple=True)
    values = 1.0 / counts[token].float()
    return torch.sparse_coo_tensor(torch.stack([ids[keep], token]), values, (llm_vocab, num_tokens),
                                   check_invariants=False).coalesce()


def full_posterior_embeddings(probs: torch.Tensor, matrix: torch.Tensor, embedding_weight: torch.Tensor):
    """`[R, V]` posterior -> `[R, H]` expectation over the whole vocabulary through `bridge_matrix`."""
    mixture = torch.sparse.mm(matrix, probs.T.float()).T
    return mixture.to(embedding_weight.dtype) @ embedding_weight


@register_projector
class SaladPosteriorProjector(SaladProjector):
    """Posterior states -> LLM input embeddings: the expected bridged embedding under Whisper's slot posterior.

    Owns the Whisper decoder (trained by distillation: in full, or with LoRA on its linear layers) and the bridge
    buffers `bridge_ids [V_whisper, K]` / `bridge_counts [V_whisper]` (built by `build_salad`, saved with the
    weights). `log_temperature` is learned; slots past the transcript hold the learned `filler`. Its audio tower is
    Whisper's encoder alone; its precomputed input is the encoder window followed by one row per slot.
    """

    adapter_type = "posterior"
    precomputed_input = "slot_states"
    precompute_uses_own_weights = True  # the greedy transcript comes from the projector's own (trainable) decoder

    def __init__(self, config):
        super().__init__()
        audio = config.audio_config
        self.decoder = WhisperDecoder(audio)
        self.initial_temperature = float(config.posterior_temperature)
        self.hard = self.initial_temperature == 0
        self.log_temperature = nn.Parameter(torch.tensor(math.log(self.initial_temperature or 1.0)))
        self.top_k = int(config.posterior_top_k)
        self.first_piece_only = config.posterior_pieces == "first"
        self.spread_pieces = config.posterior_pieces == "spread"
        self.fillers_first = config.posterior_fillers == "start"
        self.filler_text = config.posterior_filler_text
        self.hide_fillers = bool(config.posterior_hide_fillers)
        self.align_pieces_at_end = config.posterior_piece_alignment == "end"
        self.training_temperature = config.posterior_training_temperature
        self.filler = nn.Parameter(torch.zeros(config.text_config.hidden_size))
        self.logit_bias = nn.Parameter(torch.zeros(int(audio.eos_token_id))) if config.posterior_logit_bias else None
        self.numeral_bias = nn.Parameter(torch.zeros(())) if config.posterior_numeral_bias else None
        if config.posterior_numeral_bias:
            self.register_buffer("numeral_tokens", torch.zeros(int(audio.eos_token_id)))
        if config.posterior_suppress_tokens:
            self.register_buffer("suppress_mask", suppress_mask(config.whisper_suppress_tokens, audio.eos_token_id))
        else:
            self.suppress_mask = None
        self.register_buffer("bridge_ids", torch.zeros(audio.vocab_size, config.bridge_max_pieces, dtype=torch.long))
        self.register_buffer("bridge_counts", torch.zeros(audio.vocab_size, dtype=torch.long))
        self.window = int(audio.max_source_positions)
        self.prompt_ids = list(config.transcript_prompt_ids)
        self.eos_token_id = int(audio.eos_token_id)
        self.stack_factor = int(config.stack_factor)
        self.max_slots = int(audio.max_target_positions) - len(self.prompt_ids)

    # ------------------------------------------------------------ config / processor
    @classmethod
    def configure(cls, config) -> None:
        if config.audio_encoder_type != "whisper" or config.audio_padding != "window":
            raise ValueError("adapter_type='posterior' needs a Whisper audio_config and audio_padding='window' "
                             "(Whisper's decoder reads the padded 30 s window it was trained on).")
        if config.audio_config.max_source_positions != WHISPER_WINDOW_FRAMES:
            raise ValueError(f"adapter_type='posterior' needs Whisper's {WHISPER_WINDOW_FRAMES}-frame window, got "
                             f"max_source_positions={config.audio_config.max_source_positions}.")
        if not config.transcript_prompt_ids:
            raise ValueError("adapter_type='posterior' needs `transcript_prompt_ids` (Whisper's decoder prompt); "
                             "build_salad reads them from the Whisper generation config.")
        if float(config.posterior_temperature) < 0 or int(config.posterior_top_k) < 0:
            raise ValueError("posterior_temperature and posterior_top_k must be >= 0.")
        if config.posterior_piece_alignment not in POSTERIOR_PIECE_ALIGNMENTS:
            raise ValueError(f"posterior_piece_alignment must be one of {POSTERIOR_PIECE_ALIGNMENTS}, "
                             f"got {config.posterior_piece_alignment!r}.")
        training_temperature = config.posterior_training_temperature
        if training_temperature is not None and (float(training_temperature) <= 0
                                                 or float(config.posterior_temperature) == 0):
            raise ValueError("posterior_training_temperature must be > 0 (or None), and needs posterior_temperature "
                             "> 0: in argmax mode no posterior is computed.")
        if config.posterior_suppress_tokens and not config.whisper_suppress_tokens:
            raise ValueError("posterior_suppress_tokens=True needs `whisper_suppress_tokens` (the Whisper generation "
                             "config's suppress_tokens); build_salad reads them.")
        if config.posterior_pieces not in POSTERIOR_PIECE_MODES:
            raise ValueError(f"posterior_pieces must be one of {POSTERIOR_PIECE_MODES}, "
                             f"got {config.posterior_pieces!r}.")
        if config.posterior_fillers not in POSTERIOR_FILLER_MODES:
            raise ValueError(f"posterior_fillers must be one of {POSTERIOR_FILLER_MODES}, "
                             f"got {config.posterior_fillers!r}.")
        if config.posterior_hide_fillers and config.posterior_fillers != "start":
            raise ValueError("posterior_hide_fillers=True needs posterior_fillers='start': the slot that predicts "
                             "the text after a clip must be the transcript's last piece, not a hidden filler.")
        if config.posterior_pieces == "spread" and int(config.posterior_top_k) <= 0 \
                and float(config.posterior_temperature) > 0:
            raise ValueError("posterior_pieces='spread' needs posterior_top_k > 0 (its expectation runs over each "
                             "slot's top-k candidates) or posterior_temperature=0.")
        if config.stack_factor is None:
            config.stack_factor = 10
        most_slots = -(-WHISPER_WINDOW_FRAMES // int(config.stack_factor))
        room = config.audio_config.max_target_positions - len(config.transcript_prompt_ids)
        if most_slots > room:
            raise ValueError(f"stack_factor={config.stack_factor} gives {most_slots} slots per 30 s chunk, more "
                             f"than the Whisper decoder can emit ({room}); raise stack_factor.")

    @classmethod
    def slots_for_precomputed(cls, num_rows: int, stack_factor: int) -> int:
        return int(num_rows) - WHISPER_WINDOW_FRAMES

    @classmethod
    def precomputed_width(cls, config) -> int:
        return config.audio_config.d_model + 1

    # ------------------------------------------------------------ model
    def after_init_weights(self) -> None:
        """Start as the pure bridge at the configured temperature: zero filler (`build_salad` then sets it to the
        embedding of `posterior_filler_text`, when given)."""
        nn.init.zeros_(self.filler)
        for bias in (self.logit_bias, self.numeral_bias):
            if bias is not None:
                nn.init.zeros_(bias)
        with torch.no_grad():
            self.log_temperature.fill_(math.log(self.initial_temperature or 1.0))

    @property
    def temperature(self) -> torch.Tensor:
        """The learned temperature; in training mode `posterior_training_temperature` instead, when set."""
        if self.training and self.training_temperature is not None:
            return self.log_temperature.new_tensor(float(self.training_temperature))
        return self.log_temperature.exp()

    def logged_scalars(self) -> dict[str, float]:
        """The learned temperature (the one evaluation uses) and, when it trains, the numeral bias."""
        scalars = {"posterior_temperature": float(self.log_temperature.detach().exp())}
        if self.numeral_bias is not None:
            scalars["numeral_bias"] = float(self.numeral_bias.detach())
        return scalars

    def precompute(self, encoder_states, frame_mask, audio_tower=None):
        """Window `[N, T, D]` + real-frame mask `[N, T]` -> packed posterior states and mask (greedy transcript)."""
        num_slots = transcript_slots(frame_mask.sum(-1), self.stack_factor, self.max_slots)
        _, token_ids = greedy_decode_slots(self, encoder_states, num_slots, self.prompt_ids, self.eos_token_id,
                                           self.content_logit_bias())
        return pack_posterior_states(encoder_states, token_ids, num_slots)

    def slot_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """`[N, T + S]` precomputed mask -> `[N, S]`, True on each chunk's slots."""
        return mask[:, self.window:].bool()

    def embed(self, states, mask, text_embeddings):
        return self(states, mask, text_embeddings)[self.slot_mask(mask)]

    @property
    def hides_slots(self) -> bool:
        return self.hide_fillers

    def visible_slots(self, states, mask):
        """With `posterior_hide_fillers`, True on the slots that hold the transcript (`[sum of placeholders]`), the
        same slots `forward` fills; the filler slots are hidden from the LLM."""
        if not self.hide_fillers:
            return None
        _, token_ids, slot_mask = unpack_posterior_states(states, mask, self.window)
        is_token = (token_ids >= 0) & slot_mask
        row, slot = is_token.nonzero(as_tuple=True)
        if self.spread_pieces:
            row = torch.repeat_interleave(row, self.bridge_counts[token_ids[is_token]].clamp(min=1))
            slot = order_within_rows(row, token_ids.shape[0])
        filled = place_in_slots(slot_mask.new_zeros(*token_ids.shape, 1, dtype=torch.float32),
                                torch.ones(row.shape[0], 1, device=row.device), row, slot, slot_mask,
                                self.fillers_first)
        return filled[..., 0].bool()[slot_mask]

    def _slot_logits(self, encoder: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced content logits `[N, S, V]`, with the learned bias (the one greedy decoding adds)."""
        logits = teacher_forced_logits(self.decoder, encoder, token_ids, self.prompt_ids, self.eos_token_id)
        bias = self.content_logit_bias()
        return logits if bias is None else logits + bias

    def content_logit_bias(self) -> torch.Tensor | None:
        """The bias `[eos_token_id]` on Whisper's content logits: the learned ones (per-token plus the numeral
        scalar on the digit-only tokens) and -inf on the suppressed tokens; None when there is none."""
        parts = [] if self.logit_bias is None else [self.logit_bias.float()]
        if self.numeral_bias is not None:
            parts.append(self.numeral_bias.float() * self.numeral_tokens)
        if self.suppress_mask is not None:
            parts.append(self.suppress_mask)
        return sum(parts) if parts else None

    def _piece_tables(self):
        counts = self.bridge_counts.clamp(max=1) if self.first_piece_only else self.bridge_counts
        return self.bridge_ids, counts

    def expected_embeddings(self, logits: torch.Tensor, text_embeddings: nn.Module) -> torch.Tensor:
        """`[R, V]` content logits -> `[R, H]` expected bridged embeddings."""
        ids, counts = self._piece_tables()
        if self.top_k <= 0:
            matrix = bridge_matrix(ids, counts, logits.shape[-1], text_embeddings.weight.shape[0])
            return full_posterior_embeddings(torch.softmax(logits / self.temperature, -1), matrix,
                                             text_embeddings.weight)
        weights, candidates = top_k_posterior(logits, self.temperature, self.top_k)
        embedded = bridge_embeddings(candidates, ids, counts, text_embeddings)
        return (weights[..., None].to(embedded.dtype) * embedded).sum(-2)

    def forward(self, states: torch.Tensor, mask: torch.Tensor, text_embeddings: nn.Module) -> torch.Tensor:
        """Packed states `[N, T + S, D + 1]` + mask -> slot embeddings `[N, S, H]` (select with `slot_mask`)."""
        encoder, token_ids, slot_mask = unpack_posterior_states(states, mask, self.window)
        dtype = text_embeddings.weight.dtype
        out = self.filler.to(dtype).expand(*token_ids.shape, -1).clone()
        is_token = (token_ids >= 0) & slot_mask
        if not bool(is_token.any()):
            return out
        row, slot = is_token.nonzero(as_tuple=True)
        greedy = token_ids[is_token]
        logits = None if self.hard else self._slot_logits(encoder, token_ids)[is_token]
        if self.spread_pieces:
            if logits is None:
                weights, candidates = torch.ones_like(greedy, dtype=dtype)[:, None], greedy[:, None]
            else:
                weights, candidates = top_k_posterior(logits, self.temperature, self.top_k)
            values, owner, piece = spread_piece_embeddings(weights, candidates, greedy, self.bridge_ids,
                                                           self.bridge_counts, text_embeddings,
                                                           self.align_pieces_at_end)
            piece_row = row[owner]  # rows stay in order: `nonzero` walks the chunks one after another
            order = order_within_rows(piece_row, out.shape[0])
            return place_in_slots(out, values, piece_row, order, slot_mask, self.fillers_first)
        if logits is None:
            ids, counts = self._piece_tables()
            values = bridge_embeddings(greedy, ids, counts, text_embeddings)
        else:
            values = self.expected_embeddings(logits, text_embeddings)
        return place_in_slots(out, values, row, slot, slot_mask, self.fillers_first)

    # ------------------------------------------------------------ builder
    @classmethod
    def pretrained_config_fields(cls, audio_encoder_path: str, audio_config) -> dict:
        return {"transcript_prompt_ids": whisper_transcribe_prompt(audio_encoder_path),
                "whisper_suppress_tokens": whisper_suppress_tokens(audio_encoder_path)}

    def prepare_from_pretrained(self, text_tokenizer, audio_encoder_path: str, text_embeddings=None) -> None:
        """The pretrained Whisper decoder, the vocabulary bridge from the Whisper and LLM tokenizers, and the
        filler's start value (the LLM embedding of `posterior_filler_text`, when set)."""
        whisper = AutoModel.from_pretrained(audio_encoder_path)
        whisper = whisper.model if hasattr(whisper, "model") and not hasattr(whisper, "decoder") else whisper
        self.decoder.load_state_dict(whisper.decoder.state_dict())
        whisper_tokenizer = AutoTokenizer.from_pretrained(audio_encoder_path)
        ids, counts = vocabulary_bridge(whisper_tokenizer, text_tokenizer,
                                        self.bridge_ids.shape[0], self.bridge_ids.shape[1])
        self.bridge_ids.copy_(ids)
        self.bridge_counts.copy_(counts)
        if self.numeral_bias is not None:
            self.numeral_tokens.copy_(numeral_token_mask(whisper_tokenizer, self.eos_token_id))
        if self.filler_text is not None:
            self.filler.data.copy_(filler_embedding(text_tokenizer, text_embeddings, self.filler_text))
