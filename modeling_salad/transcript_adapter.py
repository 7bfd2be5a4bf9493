"""Transcript-aligned adapter (`adapter_type="transcript"`), a flat sibling of modeling_salad.py (remote-code safe).

Whisper's own pretrained decoder reads each clip greedily. Every recognized Whisper token becomes one LLM input
slot holding the LLM's own embedding of that token's text (a fixed vocabulary bridge between the two tokenizers,
following the LLM's embedding matrix as it trains) plus a learned correction computed from the decoder state that
predicted the token; slots the transcript does not reach hold a learned filler vector.

Why this exists: on a CPU budget, an adapter learned from scratch on encoder frames did not carry spoken content
to a 135M LLM (measured; see benchmarks/RESULTS.md and runs/demo/REPORT.md), while the words Whisper recognizes
do. Distillation then trains the correction and the filler (and optionally the LLM) as in the paper.

The slot count of a clip comes from its length alone (`ceil(encoder_frames / stack_factor)`), so the processor
knows every placeholder count before the model runs; the precomputed form of a clip ("encoder states" for the
trainer's and evaluator's caches) is already slot-shaped: `[slots, d_model + 1]`, the last channel holding the
Whisper token id + 1 (0 = filler slot), exact in float32.
"""

import torch
from torch import nn


def transcript_slots(num_encoder_frames: torch.Tensor, stack_factor: int, max_slots: int) -> torch.Tensor:
    """Slots of a chunk with that many real Whisper encoder frames (50 per second)."""
    slots = torch.div(num_encoder_frames + stack_factor - 1, stack_factor, rounding_mode="floor")
    return slots.clamp(min=1, max=max_slots)


@torch.no_grad()
def greedy_decode_slots(whisper, encoder_states: torch.Tensor, num_slots: torch.Tensor, prompt_ids: list[int],
                        eos_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy Whisper decoding, at most `num_slots[i]` tokens for chunk i (stops at end-of-text).

    Args:
        whisper: a `WhisperModel` (its `.decoder`; the output projection is tied to `decoder.embed_tokens`).
        encoder_states: `[N, T, D]` encoder outputs (the full 30 s window the decoder was trained with).
        num_slots: `[N]` maximum tokens per chunk.
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


class SaladTranscriptProjector(nn.Module):
    """Slot states -> LLM input embeddings: bridge embedding of the recognized token + learned correction.

    `bridge_ids [V_whisper, K]` / `bridge_counts [V_whisper]`: the LLM token ids of each Whisper token's text
    (at most K pieces, averaged). Built from the two tokenizers by `build_salad`; saved with the weights.
    """

    def __init__(self, config):
        super().__init__()
        audio_width = config.audio_config.d_model
        text_width = config.text_config.hidden_size
        self.norm = nn.LayerNorm(audio_width)
        self.up = nn.Linear(audio_width, config.adapter_hidden_size)
        self.act = nn.SiLU()
        self.down = nn.Linear(config.adapter_hidden_size, text_width)
        self.filler = nn.Parameter(torch.zeros(text_width))
        pieces = config.bridge_max_pieces
        self.register_buffer("bridge_ids", torch.zeros(config.audio_config.vocab_size, pieces, dtype=torch.long))
        self.register_buffer("bridge_counts", torch.zeros(config.audio_config.vocab_size, dtype=torch.long))

    def reset_correction(self):
        """Start as the pure bridge: zero correction and zero filler."""
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.filler)

    def bridge_embeddings(self, token_ids: torch.Tensor, text_embeddings: nn.Module) -> torch.Tensor:
        safe = token_ids.clamp(min=0)
        pieces = self.bridge_ids[safe]
        counts = self.bridge_counts[safe]
        keep = torch.arange(pieces.shape[-1], device=pieces.device) < counts[..., None]
        embedded = text_embeddings(pieces) * keep[..., None].to(text_embeddings.weight.dtype)
        return embedded.sum(-2) / counts.clamp(min=1)[..., None].to(embedded.dtype)

    def forward(self, slot_states: torch.Tensor, slot_mask: torch.Tensor, text_embeddings: nn.Module) -> torch.Tensor:
        """slot_states `[N, S, D + 1]` (float32), slot_mask `[N, S]` -> embeddings `[N, S, H]`."""
        token_ids = slot_states[..., -1].round().long() - 1
        hidden = slot_states[..., :-1].to(self.up.weight.dtype)
        correction = self.down(self.act(self.up(self.norm(hidden))))
        bridged = self.bridge_embeddings(token_ids, text_embeddings).to(correction.dtype)
        is_token = (token_ids >= 0)[..., None]
        return torch.where(is_token, bridged + correction, self.filler.to(correction.dtype).expand_as(correction))
