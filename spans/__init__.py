"""The span-document contract that `trainers`, `datasets_scripts`, `selection` and `evaluation` all read.

It sits directly above `modeling_salad` and imports nothing else of the project: the span schema and loader
(`documents`), the splitter (`splitter`), audio cells (`audio`), the encoder-state cache (`encoder_states`), the
audio-token count of a clip (`tokens`), where caches live (`cache`) and the one atomic-write helper (`files`).
"""

from modeling_salad import SAMPLING_RATE

from .audio import as_encoded_audio, clip_digest, decode_audio, encode_audio
from .cache import cache_root
from .documents import (benchmark_features, iter_span_documents, load_folder_or_hub, load_span_documents,
                        span_features, write_parquet)
from .encoder_states import EncodedClip, EncoderStatesCache, encoder_identity, frames_identity, weights_digest
from .files import (atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_writer, replace_dir,
                    staging_dir)
from .splitter import SPEECH, TEXT, split_into_spans
from .tokens import audio_token_count, audio_token_count_from_states

__all__ = [
    "SAMPLING_RATE", "SPEECH", "TEXT", "EncodedClip", "EncoderStatesCache", "as_encoded_audio", "atomic_write_bytes",
    "atomic_write_json", "atomic_write_text", "atomic_writer", "audio_token_count", "audio_token_count_from_states",
    "benchmark_features", "cache_root", "clip_digest", "decode_audio", "encode_audio", "encoder_identity",
    "frames_identity", "iter_span_documents", "load_folder_or_hub", "load_span_documents", "replace_dir",
    "span_features", "split_into_spans", "staging_dir", "weights_digest", "write_parquet",
]
