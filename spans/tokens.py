"""How many `<|audio|>` placeholders a clip expands to: one function, answered by the model's own processor.

The count depends on the encoder (frame rate, 30 s chunking) and the adapter (frames per placeholder, or one
slot state per placeholder), all of which the processor of a checkpoint knows; asking it keeps the collator, the
scorer and the model in agreement.
"""

from __future__ import annotations


def audio_token_count(processor, num_samples: int) -> int:
    """Placeholders of a 16 kHz clip of `num_samples` samples (all its chunks)."""
    if int(num_samples) < 1:
        raise ValueError(f"a clip needs at least one sample, got {num_samples}")
    return int(processor.num_audio_tokens(int(num_samples)))


def audio_token_count_from_states(processor, num_state_rows: int) -> int:
    """Placeholders of one chunk given as precomputed encoder states of `num_state_rows` real rows."""
    if int(num_state_rows) < 1:
        raise ValueError(f"precomputed states need at least one row, got {num_state_rows}")
    return int(processor.num_audio_tokens_from_states(int(num_state_rows)))
