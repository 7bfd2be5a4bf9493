"""Transcript-aligned adapter (`adapter_type="transcript"`), a flat sibling of projectors.py (remote-code safe).

Whisper's own pretrained decoder reads each clip greedily. Every recognized Whisper token becomes one LLM input
slot holding the LLM's own embedding of that token's text (a fixed vocabulary bridge between the two tokenizers,
following the LLM's embedding matrix as it trains) plus a learned correction computed from the decoder state that
predicted the token; slots the transcript does not reach hold a learned filler vector.

Why this exists: on a CPU budget, an adapter learned from scratch on encoder frames did not carry spoken content
to a 135M LLM (measured; see benchmarks/RESULTS.md and runs/demo/REPORT.md), while the words Whisper recognizes
do. Distillation then trains the correction and the filler (and optionally the LLM) as in the paper.

The slot count of a clip comes from its length alone (`ceil(encoder_frames / stack_factor)`), so the processor
knows every placeholder count before the model runs; its precomputed input (`precomputed_input = "slot_states"`,
what the trainer's and evaluator's caches store) is slot-shaped: `[slots, d_model + 1]`, the last channel holding
the Whisper token id + 1 (0 = filler slot), exact in float32.
"""

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, GenerationConfig, WhisperModel

from .projectors import SaladProjector, register_projector


def transcript_slots(num_encoder_frames: torch.Tensor, stack_factor: int, max_slots: int) -> torch.Tensor:
    """Slots of a chunk with that many real Whisper encoder frames (50 per second)."""
    slots = torch.div(num_encoder_frames + stack_factor - 1, stack_factor, rounding_mode="floor")
    return slots.clamp(min=1, max=max_slots)


@torch.no_grad()
def greedy_decode_slots(whisper, encoder_states: torch.Tensor, num_slots: torch.Tensor, prompt_ids: list[int],
                        eos_token_id: int, logit_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy Whisper decoding, at most `num_slots[i]` tokens for chunk i (stops at end-of-text).

    Args:
        whisper: a `WhisperModel` (its `.decoder`; the output projection is tied to `decoder.embed_tokens`).
        encoder_states: `[N, T, D]` encoder outputs (the full 30 s window the decoder was trained with).
        num_slots: `[N]` maximum tokens per chunk.
        logit_bias: optional `[eos_token_id]` bias added to the content tokens' logits.
    Returns:
        hidden `[N, S, D]`: the final decoder state that predicted each token (zeros past the end);
        token_ids `[N, S]`: the recognized Whisper tokens, -1 past the end. `S = num_slots.max()`.
    """
    decoder = whisper.decoder
    batch, max_slots = encoder_states.shape[0], int(num_slots.max())
    device = encoder_states.device
    vocab = decoder.embed_tokens.weight
    hidden = encoder_states.new_zeros(batch, max_slots, vocab.shape[1])
    token_ids = torch.full((batch, max_slots), -1, dtype=torch.long, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    step_input = torch.tensor([prompt_ids], dtype=torch.long, device=device).expand(batch, -1)
    cache = None
    for step in range(max_slots):
        out = decoder(input_ids=step_input, encoder_hidden_states=encoder_states, cache=cache, use_cache=True)
        cache = out.cache
        state = out.last_hidden_state[:, -1]
        logits = state.float() @ vocab.float().T
        logits[:, eos_token_id + 1:] = float("-inf")  # special and timestamp tokens are never content
        if logit_bias is not None:
            logits[:, :eos_token_id] += logit_bias.float()
        next_token = logits.argmax(-1)
        active &= (next_token != eos_token_id) & (step < num_slots)
        hidden[active, step] = state[active].to(hidden.dtype)
        token_ids[active, step] = next_token[active]
        if not bool(active.any()):
            break
        step_input = torch.where(active, next_token, torch.full_like(next_token, eos_token_id))[:, None]
    return hidden, token_ids


def pack_slot_states(hidden: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """`[N, S, D]` + `[N, S]` -> `[N, S, D + 1]` float32 slot states (last channel = token id + 1, 0 = filler)."""
    return torch.cat([hidden.float(), (token_ids + 1).float()[..., None]], dim=-1)




def _whisper_generation_config(audio_encoder_path: str) -> GenerationConfig | None:
    try:
        return GenerationConfig.from_pretrained(audio_encoder_path)
    except OSError:
        return None


def whisper_suppress_tokens(audio_encoder_path: str) -> list[int]:
    """The token ids Whisper's `generate` never writes (its generation config's `suppress_tokens`; [] without one)."""
    generation = _whisper_generation_config(audio_encoder_path)
    return [int(i) for i in (getattr(generation, "suppress_tokens", None) or [])]


def whisper_transcribe_prompt(audio_encoder_path: str) -> list[int]:
    """Whisper's decoder prompt for English transcription without timestamps: from the model's generation config,
    else (no generation config) the English-only prompt from its tokenizer."""
    generation = _whisper_generation_config(audio_encoder_path)
    if generation is not None and None not in (generation.decoder_start_token_id,
                                               getattr(generation, "no_timestamps_token_id", None)):
        prompt = [generation.decoder_start_token_id]
        if getattr(generation, "is_multilingual", False):
            prompt += [generation.lang_to_id["<|en|>"], generation.task_to_id["transcribe"]]
        return prompt + [generation.no_timestamps_token_id]
    tokenizer = AutoTokenizer.from_pretrained(audio_encoder_path)
    return tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"])


def bridge_embeddings(token_ids: torch.Tensor, bridge_ids: torch.Tensor, bridge_counts: torch.Tensor,
                      text_embeddings: nn.Module) -> torch.Tensor:
    """`[...]` Whisper ids -> `[..., H]`: the mean LLM embedding of each token's bridged pieces (0 when none)."""
    pieces = bridge_ids[token_ids]
    counts = bridge_counts[token_ids]
    keep = torch.arange(pieces.shape[-1], device=pieces.device) < counts[..., None]
    embedded = text_embeddings(pieces) * keep[..., None].to(text_embeddings.weight.dtype)
    return embedded.sum(-2) / counts.clamp(min=1)[..., None].to(embedded.dtype)


def vocabulary_bridge(whisper_tokenizer, llm_tokenizer, vocab_size: int, max_pieces: int = 4):
    """For every Whisper token id: the LLM token ids of its text (at most `max_pieces`) and their count.

    Special tokens (and ids past the Whisper tokenizer) map to nothing (count 0).
    """
    special = set(whisper_tokenizer.all_special_ids)
    texts = [whisper_tokenizer.decode([i]) if i < len(whisper_tokenizer) and i not in special else ""
             for i in range(vocab_size)]
    encoded = llm_tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = torch.zeros(vocab_size, max_pieces, dtype=torch.long)
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for i, pieces in enumerate(encoded):
        pieces = pieces[:max_pieces]
        ids[i, : len(pieces)] = torch.tensor(pieces, dtype=torch.long)
        counts[i] = len(pieces)
    return ids, counts


@register_projector
class SaladTranscriptProjector(SaladProjector):
    """Slot states -> LLM input embeddings: bridge embedding of the recognized token + learned correction.

    `bridge_ids [V_whisper, K]` / `bridge_counts [V_whisper]`: the LLM token ids of each Whisper token's text
    (at most K pieces, averaged). Built from the two tokenizers by `build_salad`; saved with the weights.
    Its audio tower is the whole `WhisperModel` (the decoder reads the clip); its precomputed input is slot-shaped.
    """

    adapter_type = "transcript"
    precomputed_input = "slot_states"

    def __init__(self, config):
        super().__init__()
        audio_width = config.audio_config.d_model
        text_width = config.text_config.hidden_size
        self.stack_factor = config.stack_factor
        self.prompt_ids = list(config.transcript_prompt_ids)
        self.max_slots = config.audio_config.max_target_positions - len(self.prompt_ids)
        self.eos_token_id = config.audio_config.eos_token_id
        self.norm = nn.LayerNorm(audio_width)
        self.up = nn.Linear(audio_width, config.adapter_hidden_size)
        self.act = nn.SiLU()
        self.down = nn.Linear(config.adapter_hidden_size, text_width)
        self.filler = nn.Parameter(torch.zeros(text_width))
        pieces = config.bridge_max_pieces
        self.register_buffer("bridge_ids", torch.zeros(config.audio_config.vocab_size, pieces, dtype=torch.long))
        self.register_buffer("bridge_counts", torch.zeros(config.audio_config.vocab_size, dtype=torch.long))

    # ------------------------------------------------------------ config / processor
    @classmethod
    def configure(cls, config) -> None:
        if config.audio_encoder_type != "whisper" or config.audio_padding != "window":
            raise ValueError("adapter_type='transcript' needs a Whisper audio_config and audio_padding='window' "
                             "(Whisper's decoder reads the padded 30 s window it was trained on).")
        if not config.transcript_prompt_ids:
            raise ValueError("adapter_type='transcript' needs `transcript_prompt_ids` (Whisper's decoder prompt); "
                             "build_salad reads them from the Whisper generation config.")
        if config.stack_factor is None:
            config.stack_factor = 10
        most_slots = -(-config.audio_config.max_source_positions // config.stack_factor)
        room = config.audio_config.max_target_positions - len(config.transcript_prompt_ids)
        if most_slots > room:
            raise ValueError(f"stack_factor={config.stack_factor} gives {most_slots} slots per 30 s chunk, more "
                             f"than the Whisper decoder can emit ({room}); raise stack_factor.")

    @classmethod
    def precomputed_width(cls, config) -> int:
        return config.audio_config.d_model + 1

    # ------------------------------------------------------------ model
    @classmethod
    def build_audio_tower(cls, config) -> nn.Module:
        return WhisperModel(config.audio_config)

    @classmethod
    def audio_encoder(cls, audio_tower: nn.Module) -> nn.Module:
        return audio_tower.encoder

    def after_init_weights(self) -> None:
        self.reset_correction()

    def reset_correction(self):
        """Start as the pure bridge: zero correction and zero filler."""
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.filler)

    def precompute(self, encoder_states, frame_mask, audio_tower):
        """Slot states `[N, S, C + 1]` (decoder state + token id + 1) and slot mask `[N, S]`."""
        num_slots = transcript_slots(frame_mask.sum(-1), self.stack_factor, self.max_slots)
        hidden, token_ids = greedy_decode_slots(audio_tower, encoder_states, num_slots, self.prompt_ids,
                                                self.eos_token_id)
        slot_mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < num_slots[:, None]
        return pack_slot_states(hidden, token_ids), slot_mask

    def embed(self, states, mask, text_embeddings):
        slot_mask = mask.bool()
        return self(states, slot_mask, text_embeddings)[slot_mask]

    def bridge_embeddings(self, token_ids: torch.Tensor, text_embeddings: nn.Module) -> torch.Tensor:
        return bridge_embeddings(token_ids.clamp(min=0), self.bridge_ids, self.bridge_counts, text_embeddings)

    def forward(self, slot_states: torch.Tensor, slot_mask: torch.Tensor, text_embeddings: nn.Module) -> torch.Tensor:
        """slot_states `[N, S, D + 1]` (float32), slot_mask `[N, S]` -> embeddings `[N, S, H]`."""
        token_ids = slot_states[..., -1].round().long() - 1
        hidden = slot_states[..., :-1].to(self.up.weight.dtype)
        correction = self.down(self.act(self.up(self.norm(hidden))))
        bridged = self.bridge_embeddings(token_ids, text_embeddings).to(correction.dtype)
        is_token = (token_ids >= 0)[..., None]
        return torch.where(is_token, bridged + correction, self.filler.to(correction.dtype).expand_as(correction))

    # ------------------------------------------------------------ builder
    @classmethod
    def pretrained_config_fields(cls, audio_encoder_path: str, audio_config) -> dict:
        return {"transcript_prompt_ids": whisper_transcribe_prompt(audio_encoder_path)}

    @classmethod
    def load_audio_tower(cls, audio_encoder_path: str, config, dtype) -> nn.Module:
        full = AutoModel.from_pretrained(audio_encoder_path, dtype=dtype)
        return full.model if hasattr(full, "model") and not hasattr(full, "encoder") else full

    def prepare_from_pretrained(self, text_tokenizer, audio_encoder_path: str, text_embeddings=None) -> None:
        """Fill the vocabulary bridge from the Whisper and LLM tokenizers."""
        ids, counts = vocabulary_bridge(AutoTokenizer.from_pretrained(audio_encoder_path), text_tokenizer,
                                        self.bridge_ids.shape[0], self.bridge_ids.shape[1])
        self.bridge_ids.copy_(ids)
        self.bridge_counts.copy_(counts)
