"""SALAD processor: audio loading/validation, 30 s chunking, placeholder expansion, chat template with audio parts.

Remote-code safe: optional deps (soundfile, soxr) imported inside functions; public transformers API only.
"""

import io
import math
import os
import warnings

import numpy as np
from transformers import ProcessorMixin

from .configuration_salad import projector_class

SAMPLING_RATE = 16_000
WHISPER_HOP_LENGTH = 160
WHISPER_MIN_SAMPLES = 400  # one STFT window; shorter chunks are zero-padded to it
AUDIO_TOKEN = "<|audio|>"
NOISE_FLATNESS = 0.45  # median spectral flatness: white noise ~0.56, speech and music far lower

DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'audio' -%}{{ '<|audio|>' }}{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


# Prepended to a base tokenizer's template that only knows string contents: flattens list contents, rendering
# `{"type": "audio"}` parts as `<|audio|>` (top-level `set` rebinds `messages` for the rest of the template).
AUDIO_PARTS_PREAMBLE = (
    "{%- set salad_ns = namespace(messages=[]) -%}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string or message['content'] is none -%}"
    "{%- set salad_ns.messages = salad_ns.messages + [message] -%}"
    "{%- else -%}{%- set salad_text = namespace(value='') -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'audio' -%}{%- set salad_text.value = salad_text.value + '<|audio|>' -%}"
    "{%- elif part['type'] == 'text' -%}{%- set salad_text.value = salad_text.value + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set salad_ns.messages = salad_ns.messages + [{'role': message['role'], 'content': salad_text.value}] -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- set messages = salad_ns.messages -%}"
)


def audio_chat_template(base_template: str | None, audio_token: str = AUDIO_TOKEN) -> str:
    """A chat template that renders audio parts as `audio_token`: the base one if it already does, else the base
    one behind `AUDIO_PARTS_PREAMBLE`, else a ChatML template."""
    if not base_template:
        return DEFAULT_CHAT_TEMPLATE.replace(AUDIO_TOKEN, audio_token)
    if "audio" in base_template:
        return base_template
    return AUDIO_PARTS_PREAMBLE.replace(AUDIO_TOKEN, audio_token) + base_template

# --------------------------------------------------------------------------- audio loading
def _read_file(source, name: str):
    try:
        import soundfile as sf
    except ImportError as err:  # optional dependency, imported lazily
        raise ImportError("Reading audio files needs `soundfile` (pip install soundfile).") from err
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for unreadable input
        raise ValueError(f"Cannot read audio file {name!r}: {err}") from err
    return data, int(rate)


def _to_float_array(audio, name: str) -> np.ndarray:
    if hasattr(audio, "detach"):  # torch tensor without importing torch here
        audio = audio.detach().cpu().numpy()
    array = np.asarray(audio)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name}: audio must be numeric, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.signedinteger):
        array = array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
    elif np.issubdtype(array.dtype, np.unsignedinteger):
        half = float(2 ** (8 * array.dtype.itemsize - 1))
        array = (array.astype(np.float32) - half) / half
    return array.astype(np.float32, copy=False)


def _downmix(array: np.ndarray, name: str) -> np.ndarray:
    """Mono from `[samples]`, `[samples, channels]` or `[channels, samples]` (the smaller axis is the channel axis)."""
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise ValueError(f"{name}: audio must be 1-D (mono) or 2-D (multi-channel), got shape {array.shape}.")
    channel_axis = 0 if array.shape[0] < array.shape[1] else 1
    return array.mean(axis=channel_axis)


def load_audio(audio, sampling_rate: int | None = None, name: str = "audio") -> np.ndarray:
    """Return `audio` as a float32 mono 16 kHz array.

    Accepts a numeric array or tensor (any int/float dtype; int16/int32 scaled to [-1, 1]; stereo `[samples, 2]` or
    `[2, samples]` averaged to mono) with its `sampling_rate`, a file path, `{"array", "sampling_rate"}`, or a
    `datasets.Audio(decode=False)` row `{"bytes", "path"}`. Other rates are resampled with soxr.
    Raises ValueError naming the problem: empty audio, NaN/inf samples, unknown rate, corrupt or missing file.
    """
    if isinstance(audio, (str, os.PathLike)):
        path = os.fspath(audio)
        if not os.path.isfile(path):
            raise ValueError(f"Audio file {path!r} does not exist.")
        data, rate = _read_file(path, path)
        return _warn_if_noise(_finish(data, rate, path), path)
    if isinstance(audio, dict):
        if audio.get("array") is not None:
            rate = audio.get("sampling_rate", sampling_rate)
            return load_audio(audio["array"], rate, name=audio.get("path") or name)
        if audio.get("bytes") is not None:
            label = audio.get("path") or name
            data, rate = _read_file(io.BytesIO(audio["bytes"]), label)
            return _warn_if_noise(_finish(data, rate, label), label)
        if audio.get("path") is not None:
            return load_audio(audio["path"], name=audio["path"])
        raise ValueError(f"{name}: audio dict needs 'array' + 'sampling_rate', 'bytes' or 'path'; got {sorted(audio)}.")
    if sampling_rate is None:
        raise ValueError(
            f"{name}: `sampling_rate` is required for a raw audio array (SALAD resamples to {SAMPLING_RATE} Hz)."
        )
    return _finish(_to_float_array(audio, name), sampling_rate, name)


def spectral_flatness(mono: np.ndarray, frame: int = 512) -> float:
    """Median over Hann-windowed frames of the power spectrum's geometric / arithmetic mean (0 tonal, ~0.56 white
    noise); 0 for audio shorter than one frame."""
    count = mono.size // frame
    if count == 0:
        return 0.0
    frames = mono[: count * frame].reshape(count, frame) * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    return float(np.median(np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)))


def _warn_if_noise(mono: np.ndarray, name: str) -> np.ndarray:
    """Files only: a header can be valid while the payload is random bytes, which decodes to white noise."""
    flatness = spectral_flatness(mono)
    if flatness >= NOISE_FLATNESS:
        warnings.warn(f"{name}: the audio looks like white noise (spectral flatness {flatness:.2f} >= "
                      f"{NOISE_FLATNESS}); is the file corrupt or not audio?", stacklevel=3)
    return mono


def _finish(array: np.ndarray, rate, name: str) -> np.ndarray:
    if isinstance(rate, (str, bytes, bool)):
        raise ValueError(f"{name}: the sampling rate must be a number, got {rate!r} ({type(rate).__name__}).")
    if rate is None or not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"{name}: invalid sampling rate {rate!r}.")
    mono = _downmix(np.asarray(array, dtype=np.float32), name)
    if mono.size == 0:
        raise ValueError(f"{name}: audio is empty.")
    if not np.isfinite(mono).all():
        raise ValueError(f"{name}: audio contains NaN or infinite samples.")
    if int(rate) != SAMPLING_RATE:
        try:
            import soxr
        except ImportError as err:  # optional dependency, imported lazily
            raise ImportError("Resampling needs `soxr` (pip install soxr).") from err

        mono = soxr.resample(mono, int(rate), SAMPLING_RATE).astype(np.float32)
        if mono.size == 0:
            raise ValueError(f"{name}: audio is empty after resampling from {rate} Hz.")
    return np.ascontiguousarray(mono, dtype=np.float32)


# --------------------------------------------------------------------------- processor
# apply_chat_template arguments that belong to the processor call, not to the Jinja template.
CALL_KWARGS = ("padding", "return_tensors", "truncation", "max_length")
class SaladProcessor(ProcessorMixin):
    r"""
    Feature extractor (Whisper log-mel, or Mimi/Encodec waveform) + tokenizer with a dedicated `<|audio|>` token.

    Each `<|audio|>` in the text is expanded to exactly the number of embeddings the model makes for its clip.
    Whisper clips longer than `chunk_seconds` are split into chunks (never truncated); chunks are flat in clip order.

    Args:
        feature_extractor: `WhisperFeatureExtractor` or `EncodecFeatureExtractor` (Mimi).
        tokenizer: tokenizer holding `audio_token` as a special token.
        chat_template: Jinja template rendering `{"type": "audio"}` parts as `<|audio|>`.
        audio_token: placeholder token. stack_factor: encoder frames per embedding (same as the model config).
        audio_padding: `"window"` (30 s window as pretrained) or `"none"` (real length), as the model config.
        chunk_seconds: Whisper chunk length. max_audio_seconds: longest clip accepted (longer raises).
        mimi_frame_samples: Mimi samples per latent frame at the feature extractor's rate (1920 = 24 kHz / 12.5 Hz).
        adapter_type: the model's adapter; its projector class gives the placeholder count of a chunk and the kind
            of its precomputed states. slot_states: read from processor configs saved before `adapter_type` was
            stored (True meant slot-shaped precomputed states).

    Call defaults (`ProcessingKwargs` groups, overridable per call): text padded to the longest, PyTorch tensors.
    """

    text_kwargs = {"padding": True, "return_tensors": "pt", "return_token_type_ids": False}

    def __init__(
        self,
        feature_extractor=None,
        tokenizer=None,
        chat_template=None,
        audio_token: str = AUDIO_TOKEN,
        stack_factor: int = 4,
        audio_padding: str = "window",
        chunk_seconds: float = 30.0,
        max_audio_seconds: float = 600.0,
        mimi_frame_samples: int = 1920,
        adapter_type: str | None = None,
        slot_states: bool | None = None,
        **kwargs,
    ):
        self.audio_token = audio_token
        self.stack_factor = int(stack_factor)
        self.audio_padding = audio_padding
        self.chunk_seconds = float(chunk_seconds)
        self.max_audio_seconds = float(max_audio_seconds)
        self.mimi_frame_samples = int(mimi_frame_samples)
        self.adapter_type = adapter_type or ("transcript" if slot_states else "transformer")
        projector_class(self.adapter_type)  # unknown names fail here, not at the first clip
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template, **kwargs)
        if audio_token not in self.tokenizer.get_vocab():
            raise ValueError(f"The tokenizer has no {audio_token!r} token; add it as a special token first.")
        self.audio_token_id = self.tokenizer.convert_tokens_to_ids(audio_token)

    # ---------------------------------------------------------------- counts
    @property
    def projector(self):
        """The projector class of the model's adapter (what the placeholder counts come from)."""
        return projector_class(self.adapter_type)

    @property
    def slot_states(self) -> bool:
        """True when precomputed states (`model.encode_audio`) hold one row per placeholder."""
        return self.projector.precomputed_input == "slot_states"

    @property
    def is_mimi(self) -> bool:
        return "Encodec" in type(self.feature_extractor).__name__

    @property
    def chunk_samples(self) -> int:
        return int(round(self.chunk_seconds * SAMPLING_RATE))

    def _chunk_lengths(self, num_samples_16k: int) -> list[int]:
        if self.is_mimi:
            return [num_samples_16k]
        full, rest = divmod(num_samples_16k, self.chunk_samples)
        return [self.chunk_samples] * full + ([rest] if rest else [])

    def num_chunks(self, num_samples_16k: int) -> int:
        """How many encoder chunks a 16 kHz clip of `num_samples_16k` samples is split into."""
        return len(self._chunk_lengths(num_samples_16k))

    def _encoder_frames(self, chunk_samples: int) -> int:
        if self.is_mimi:
            samples = self._mimi_length(chunk_samples)
            return math.ceil(samples / self.mimi_frame_samples)
        mel_frames = max(chunk_samples, WHISPER_MIN_SAMPLES) // WHISPER_HOP_LENGTH
        return (mel_frames - 1) // 2 + 1

    def _mimi_length(self, num_samples_16k: int) -> int:
        rate = self.feature_extractor.sampling_rate
        return num_samples_16k if rate == SAMPLING_RATE else math.ceil(num_samples_16k * rate / SAMPLING_RATE)

    def num_audio_tokens_from_frames(self, num_encoder_frames: int) -> int:
        """Placeholders for one chunk with `num_encoder_frames` real encoder frames."""
        return self.projector.num_slots(num_encoder_frames, self.stack_factor)

    def num_audio_tokens_from_states(self, num_state_rows: int) -> int:
        """Placeholders for one chunk given as precomputed states (`model.encode_audio` rows of the real length)."""
        return self.projector.slots_for_precomputed(num_state_rows, self.stack_factor)

    def num_audio_tokens(self, num_samples_16k: int) -> int:
        """Placeholders a 16 kHz clip of `num_samples_16k` samples expands to (all its chunks)."""
        return sum(self.num_audio_tokens_from_frames(self._encoder_frames(n)) for n in self._chunk_lengths(num_samples_16k))

    # ---------------------------------------------------------------- features
    def _check_length(self, clip: np.ndarray, index: int):
        seconds = clip.shape[0] / SAMPLING_RATE
        if seconds > self.max_audio_seconds:
            raise ValueError(
                f"audio {index} lasts {seconds:.1f} s, more than max_audio_seconds={self.max_audio_seconds:g}; "
                "split it or raise the limit."
            )

    def _whisper_chunk(self, chunk: np.ndarray):
        if chunk.shape[0] < WHISPER_MIN_SAMPLES:
            chunk = np.pad(chunk, (0, WHISPER_MIN_SAMPLES - chunk.shape[0]))
        padding = "max_length" if self.audio_padding == "window" else "longest"
        features = self.feature_extractor(
            chunk, sampling_rate=SAMPLING_RATE, padding=padding, return_tensors="np", return_attention_mask=False
        )["input_features"][0]
        return features, chunk.shape[0] // WHISPER_HOP_LENGTH

    def _mimi_chunk(self, chunk: np.ndarray):
        rate = self.feature_extractor.sampling_rate
        if rate != SAMPLING_RATE:
            try:
                import soxr
            except ImportError as err:  # optional dependency, imported lazily
                raise ImportError("Resampling needs `soxr` (pip install soxr).") from err

            resampled = soxr.resample(chunk, SAMPLING_RATE, rate).astype(np.float32)
            target = self._mimi_length(chunk.shape[0])
            chunk = np.pad(resampled, (0, max(0, target - resampled.shape[0])))[:target]
        # Whole 80 ms frames only: Mimi's last partial frame depends on what follows it, so a clip batched with
        # longer ones would differ from the clip alone. The zero tail counts as part of the clip.
        chunk = np.pad(chunk, (0, (-chunk.shape[0]) % self.mimi_frame_samples))
        values = self.feature_extractor(chunk, sampling_rate=rate, return_tensors="np")["input_values"][0]
        return values, values.shape[-1]

    def extract_audio_features(self, clips) -> dict:
        """Chunk 16 kHz clips and extract features. Returns `input_features [N, ...]`, `input_features_mask [N, L]`
        (1 on the real part of each chunk; chunks flat, in clip order) and `num_audio_tokens` per clip."""
        import torch

        features, valid, tokens = [], [], []
        for index, clip in enumerate(clips):
            clip = np.asarray(clip, dtype=np.float32)
            self._check_length(clip, index)
            clip_tokens, start = 0, 0
            for length in self._chunk_lengths(clip.shape[0]):
                chunk = clip[start : start + length]
                start += length
                values, real = self._mimi_chunk(chunk) if self.is_mimi else self._whisper_chunk(chunk)
                features.append(values)
                valid.append(real)
                clip_tokens += self.num_audio_tokens_from_frames(self._encoder_frames(length))
            tokens.append(clip_tokens)
        max_len = max(f.shape[-1] for f in features)
        batch = np.zeros((len(features),) + features[0].shape[:-1] + (max_len,), dtype=np.float32)
        for i, values in enumerate(features):
            batch[i, ..., : values.shape[-1]] = values
        mask = np.arange(max_len)[None, :] < np.asarray(valid)[:, None]
        return {
            "input_features": torch.from_numpy(batch),
            "input_features_mask": torch.from_numpy(mask.astype(np.int64)),
            "num_audio_tokens": tokens,
        }

    # ---------------------------------------------------------------- ProcessorMixin.__call__ hooks
    def __call__(self, text=None, audio=None, **kwargs):
        """Tokenize `text` (str or list) with each `<|audio|>` expanded for its clip in `audio` (one clip or a list,
        in order of appearance across the batch; anything `load_audio` reads, raw arrays with `sampling_rate`).
        Returns input_ids, attention_mask[, input_features, input_features_mask]."""
        if text is None:
            raise ValueError(f"SaladProcessor needs `text` (use {self.audio_token!r} where each clip goes).")
        kwargs.pop("images", None)
        kwargs.pop("videos", None)
        return super().__call__(text=text, audio=audio, **kwargs)

    def prepare_inputs_layout(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """Text as a list; every clip read and resampled to 16 kHz mono by `load_audio` (named errors)."""
        texts = [text] if isinstance(text, str) else list(text)
        if audio is None:
            return images, texts, videos, None
        clips = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        rate = kwargs.get("sampling_rate", kwargs.get("audio_kwargs", {}).get("sampling_rate"))
        return images, texts, videos, [load_audio(clip, rate, name=f"audio {i}") for i, clip in enumerate(clips)]

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if not all(isinstance(t, str) for t in text):
            raise ValueError("`text` must be a string or a list of strings.")
        num_placeholders = sum(t.count(self.audio_token) for t in text)
        num_clips = len(audio or [])
        if num_placeholders != num_clips:
            raise ValueError(
                f"The text holds {num_placeholders} {self.audio_token!r} placeholders but {num_clips} audio clips "
                "were given; pass one clip per placeholder."
            )

    def _process_audio(self, audio, **kwargs):
        """Chunk and extract the clips; each placeholder becomes its clip's embedding count of audio tokens."""
        audio_inputs = self.extract_audio_features(audio)
        replacements = [self.replace_audio_token(audio_inputs, index) for index in range(len(audio))]
        return audio_inputs, replacements

    def replace_audio_token(self, audio_inputs: dict, audio_idx: int, **kwargs) -> str:
        return self.audio_token * audio_inputs["num_audio_tokens"][audio_idx]

    @property
    def unused_input_names(self) -> list[str]:
        return ["num_audio_tokens"]

    # ---------------------------------------------------------------- chat
    def apply_chat_template(self, conversation, chat_template=None, add_generation_prompt=False, tokenize=False,
                            sampling_rate=None, processor_kwargs=None, return_dict=True, **kwargs):
        """Render conversation(s) whose message content is a string or a list of `{"type": "text", "text"}` and
        `{"type": "audio", "audio"|"path"|"array"(+"sampling_rate")}` parts. With `tokenize=True`, returns the
        processor outputs with the clips loaded (`processor_kwargs`, `padding`, `return_tensors`, `truncation` and
        `max_length` go to the processor call); otherwise the rendered text (audio parts become `<|audio|>`).
        Other keyword arguments (e.g. `continue_final_message`) go to the template."""
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = conversation if batched else [conversation]
        call_kwargs = dict(processor_kwargs or {})
        for name in CALL_KWARGS:
            if name in kwargs:
                call_kwargs[name] = kwargs.pop(name)
        template = chat_template or self.chat_template or self.tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE
        texts, clips = [], []
        for conv in conversations:
            flat = [self._flatten_message(message, clips) for message in conv]
            texts.append(self.tokenizer.apply_chat_template(
                flat, chat_template=template, add_generation_prompt=add_generation_prompt, tokenize=False, **kwargs))
        if not tokenize:
            return texts if batched else texts[0]
        return self(text=texts, audio=clips or None, sampling_rate=sampling_rate, **call_kwargs)

    def _flatten_message(self, message, clips):
        content = message.get("content")
        if isinstance(content, str) or content is None:
            return dict(message)
        parts = []
        for part in content:
            kind = part.get("type")
            if kind == "text":
                parts.append(part.get("text", ""))
            elif kind == "audio":
                clip = next((part[k] for k in ("audio", "path", "url") if part.get(k) is not None), None)
                if clip is not None and not isinstance(clip, (str, dict)) and part.get("sampling_rate"):
                    clip = {"array": clip, "sampling_rate": part["sampling_rate"]}
                if clip is None and part.get("array") is not None:
                    clip = {"array": part["array"], "sampling_rate": part.get("sampling_rate")}
                if clip is None:
                    raise ValueError("An audio part needs 'audio', 'path' or 'array' (+ 'sampling_rate').")
                if isinstance(clip, str) and clip.startswith(("http://", "https://")):
                    raise ValueError(f"Audio URLs are not fetched; download {clip!r} and pass the file path.")
                clips.append(clip)
                parts.append(self.audio_token)
            else:
                raise ValueError(f"Unknown content part type {kind!r}; expected 'text' or 'audio'.")
        return {**message, "content": "".join(parts)}

    def save_pretrained(self, save_directory, **kwargs):
        """Save with `auto_map` so `AutoProcessor.from_pretrained(dir, trust_remote_code=True)` finds this class."""
        type(self).register_for_auto_class("AutoProcessor")
        return super().save_pretrained(save_directory, **kwargs)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "input_features", "input_features_mask"]
