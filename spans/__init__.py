"""The span-document contract that `trainers`, `datasets_scripts`, `selection` and `evaluation` all read.

It sits directly above `modeling_salad` and imports nothing else of the project. It holds the span schema and
splitter, audio encoding and decoding, the encoder-state cache, the audio-token count of a clip, and the one
atomic-write helper.
"""

from modeling_salad import SAMPLING_RATE

from .files import atomic_write_bytes, atomic_write_json, atomic_write_text, replace_dir, staging_dir

__all__ = ["SAMPLING_RATE", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "replace_dir", "staging_dir"]
