"""First look at a freshly built SALAD model, the way a user meets it: a new Python process loads the saved
folder with `AutoModel`/`AutoProcessor` (`trust_remote_code=True`), hears a real recorded English utterance
(LibriVox, from pocketsphinx-testdata) after a text prompt, and generates an answer greedily.

    python -m salad_demo.first_look runs/demo/salad-init --audio /usr/share/pocketsphinx/test/data/librivox/...wav

Printed: the answer, the reference transcript, tokens/s and the process's peak memory. Before Stage I the
adapter is untrained, and the output says so: whatever it generates is not yet speech understanding.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from modeling_salad import SAMPLING_RATE
from spans import atomic_write_text

DEFAULT_PROMPT = "What does the speaker say? Repeat it."
UNTRAINED_NOTE = ("The adapter of this model is UNTRAINED (salad-init: freshly built, before Stage I), so this "
                  "answer shows the plumbing (remote code, processor, audio -> adapter -> LLM -> generate), "
                  "not speech understanding.")


def reference_transcript(audio_path: str | os.PathLike) -> str | None:
    """The pocketsphinx-testdata transcription line of a LibriVox clip ("TEXT (fileid)"), if present."""
    audio_path = Path(audio_path)
    listing = audio_path.parent / "transcription"
    if not listing.is_file():
        return None
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.rstrip().endswith(f"({audio_path.stem})"):
            text = line.rsplit("(", 1)[0].replace("<s>", "").replace("</s>", "")
            return " ".join(text.split()).lower()
    return None


def first_look(model_dir: str, audio_path: str, prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 24) -> dict:
    """Load `model_dir` through the Auto classes and answer `prompt` about the clip; runs in THIS process."""
    import torch
    from transformers import AutoModel, AutoProcessor

    from modeling_salad.loading import resolve_trust_remote_code
    from modeling_salad.processing_salad import load_audio

    if not Path(model_dir, "config.json").is_file():
        raise ValueError(f"{model_dir} is not a saved model folder (no config.json)")
    trust = resolve_trust_remote_code(model_dir)  # the demo's own folder: the installed code, by sha256
    start = time.perf_counter()
    model = AutoModel.from_pretrained(model_dir, trust_remote_code=trust).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=trust)
    load_seconds = time.perf_counter() - start
    audio = load_audio(str(audio_path))
    messages = [{"role": "user", "content": [{"type": "audio", "array": audio, "sampling_rate": SAMPLING_RATE},
                                             {"type": "text", "text": "\n" + prompt}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    start = time.perf_counter()
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    seconds = time.perf_counter() - start
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    return {
        "model_class": type(model).__name__, "processor_class": type(processor).__name__,
        "adapter_type": getattr(model.config, "adapter_type", None),
        "audio": str(audio_path), "audio_seconds": round(len(audio) / SAMPLING_RATE, 2),
        "reference": reference_transcript(audio_path), "prompt": prompt,
        "answer": processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip(),
        "new_tokens": int(new_tokens.numel()), "generate_seconds": round(seconds, 3),
        "tokens_per_second": round(new_tokens.numel() / seconds, 2) if seconds > 0 else None,
        "load_seconds": round(load_seconds, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "adapter_trained": False, "note": UNTRAINED_NOTE,
    }


def describe(result: dict) -> str:
    return "\n".join([
        f"first look ({result['model_class']} + {result['processor_class']} via trust_remote_code, adapter "
        f"{result['adapter_type']}):",
        f"  audio      {Path(result['audio']).name} ({result['audio_seconds']} s, real recorded speech)",
        f"  reference  {result['reference']!r}",
        f"  prompt     {result['prompt']!r}",
        f"  answer     {result['answer']!r}",
        f"  speed      {result['new_tokens']} tokens in {result['generate_seconds']} s = "
        f"{result['tokens_per_second']} tokens/s; peak memory {result['peak_rss_gib']:.2f} GiB",
        f"  NOTE       {result['note']}",
    ])


def run_first_look(model_dir: str | os.PathLike, audio_path: str | os.PathLike, json_path: str | os.PathLike,
                   prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 24, timeout: float = 900) -> dict:
    """Run `first_look` in a FRESH Python process (nothing imported here leaks into the load); returns its
    result dict and prints its summary."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "salad_demo.first_look", str(model_dir), "--audio", str(audio_path),
           "--prompt", prompt, "--max-new-tokens", str(max_new_tokens), "--json", str(json_path)]
    import torch

    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the parent's thread choice
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"first look failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(json_path.read_text())
    print(describe(result), flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salad_demo.first_look", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="saved SALAD folder (e.g. runs/demo/salad-init)")
    parser.add_argument("--audio", required=True, help="a 16 kHz (or any rate) speech file")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--json", help="write the result here as JSON")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        raise ValueError("--max-new-tokens must be >= 1")
    result = first_look(args.model_dir, args.audio, args.prompt, args.max_new_tokens)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    else:
        print(describe(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
