"""`salad-app`: ask a SALAD model a spoken question in the browser, side by side with its base LLM and an ASR cascade.

    salad-app [--model runs/demo/salad-demo] [--base-model LLM] [--asr-model WHISPER_DIR] [--trust-remote-code]
              [--tts piper] [--host 127.0.0.1] [--port 7860]

Record or upload a spoken question, or type one (a typed question is spoken by the TTS voice `--tts`). The page
shows SALAD's answer to the speech (with the clip's `<|audio|>` placeholder count), the base LLM's answer to the
written question (the typed text, else the cascade's transcript), and the cascade's transcript and answer
(Whisper -> base LLM), each with its latency. The model is the folder `make demo` exports by default; any SALAD
folder or Hub id works, and its remote code runs only with `--trust-remote-code`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evaluation.generate_mode import generate_answer
from spans import audio_token_count
from evaluation.loading import load_base_llm, load_salad

DEFAULT_MODEL = "runs/demo/salad-demo"
TEXT_INSTRUCTION = "Answer the question briefly."
SAMPLING_RATE = 16000


def default_asr_path() -> str | None:
    """The Whisper tiny.en folder that `salad-assets` prepares, when it is there."""
    from datasets_scripts.cache import cache_root

    path = cache_root() / "salad-assets" / "whisper-tiny.en"
    return str(path) if path.is_dir() else None


def check_model_argument(model: str) -> str:
    """The model folder or Hub id; a clear error when the folder (the demo export by default) is missing."""
    if Path(model).is_dir():
        return model
    if model == DEFAULT_MODEL:
        raise ValueError(f"The demo model {DEFAULT_MODEL!r} does not exist: run `make demo` first, or pass "
                         "--model with a SALAD folder or Hub id.")
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ValueError(f"SALAD model folder {model!r} does not exist (nor is it a Hub id like org/name).")
    return model


def base_model_name(config) -> str:
    """The base text LLM of a SALAD config: `base_text_model`, else the name its `text_config` was loaded from."""
    name = getattr(config, "base_text_model", None) or getattr(config.text_config, "_name_or_path", None)
    if not name:
        raise ValueError("The SALAD config names no base text LLM (base_text_model); pass --base-model.")
    return name


@torch.no_grad()
def answer_text(model, tokenizer, question: str, max_new_tokens: int = 48) -> str:
    """Greedy answer of a text LLM to a written question (its chat template when it has one)."""
    message = f"{question.strip()}\n{TEXT_INSTRUCTION}"
    if getattr(tokenizer, "chat_template", None):
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
    else:
        inputs = tokenizer(f"Question: {question.strip()}\nAnswer:", return_tensors="pt")
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, 1000.0 * (time.perf_counter() - start)


@dataclass
class Answers:
    """What the page shows for one question."""

    salad: str
    salad_info: str
    base: str
    base_info: str
    transcript: str
    cascade: str
    cascade_info: str

    def as_tuple(self) -> tuple[str, ...]:
        return (self.salad, self.salad_info, self.base, self.base_info, self.transcript, self.cascade,
                self.cascade_info)


class SaladApp:
    """The three answers to one question; `build_ui()` is the Gradio page around `ask`.

    Args:
        model, processor: the SALAD model; base_model, base_tokenizer: its base text LLM.
        asr: a `evaluation.cascade.WhisperASR` (None: no cascade column answers).
        tts: voice spec for typed questions (`datasets_scripts.tts`), e.g. "piper" or "flite:slt".
    """

    def __init__(self, model, processor, base_model, base_tokenizer, asr=None, tts: str = "piper",
                 max_new_tokens: int = 48):
        self.model, self.processor = model, processor
        self.base_model, self.base_tokenizer = base_model, base_tokenizer
        self.asr, self.tts, self.max_new_tokens = asr, tts, max_new_tokens

    def speak(self, text: str) -> np.ndarray:
        from datasets_scripts.tts import VoicePool

        audio, _, _, _ = VoicePool(self.tts).synthesize(text, text)
        return np.asarray(audio, dtype=np.float32)

    def clip(self, audio_path: str | None, typed: str) -> np.ndarray:
        from modeling_salad import load_audio

        if audio_path:
            return load_audio(audio_path)
        if typed.strip():
            return self.speak(typed.strip())
        raise ValueError("Record or upload a spoken question, or type one.")

    def ask(self, audio_path: str | None, typed: str = "") -> Answers:
        typed = typed or ""
        audio = self.clip(audio_path, typed)
        placeholders = audio_token_count(self.processor, len(audio))
        salad, salad_ms = _timed(generate_answer, self.model, self.processor, {"choices": []}, audio,
                                 self.max_new_tokens)
        transcript, cascade, cascade_info = "", "", "no ASR model: pass --asr-model WHISPER_DIR"
        if self.asr is not None:
            transcript, asr_ms = _timed(lambda: self.asr.transcribe([audio])[0])
            cascade, llm_ms = _timed(answer_text, self.base_model, self.base_tokenizer, transcript or "(inaudible)",
                                     self.max_new_tokens)
            cascade_info = f"{asr_ms + llm_ms:.0f} ms (ASR {asr_ms:.0f} ms + LLM {llm_ms:.0f} ms)"
        written = typed.strip() or transcript
        base, base_ms = ("", 0.0) if not written else _timed(answer_text, self.base_model, self.base_tokenizer,
                                                             written, self.max_new_tokens)
        source = "typed question" if typed.strip() else "cascade transcript"
        return Answers(
            salad=salad, salad_info=f"{placeholders} audio placeholders for {len(audio) / SAMPLING_RATE:.1f} s of "
                                    f"speech · {salad_ms:.0f} ms",
            base=base, base_info=f"reads the {source} · {base_ms:.0f} ms" if written else "no written question",
            transcript=transcript, cascade=cascade, cascade_info=cascade_info,
        )

    def build_ui(self):
        import gradio as gr

        def on_ask(audio_path, typed):
            try:
                return self.ask(audio_path, typed).as_tuple()
            except ValueError as error:
                raise gr.Error(str(error)) from None

        with gr.Blocks(title="SALAD: ask with your voice") as page:
            gr.Markdown("# SALAD — ask with your voice\nRecord or upload a spoken question, or type one.")
            with gr.Row():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Spoken question",
                                 elem_id="audio-input")
                typed = gr.Textbox(label="…or type a question", lines=2, elem_id="typed-question")
            ask = gr.Button("Ask", variant="primary", elem_id="ask-button")
            with gr.Row():
                with gr.Column():
                    salad = gr.Textbox(label="SALAD (hears the speech)", interactive=False, elem_id="salad-answer")
                    salad_info = gr.Markdown(elem_id="salad-info")
                with gr.Column():
                    base = gr.Textbox(label="Base LLM (reads the written question)", interactive=False,
                                      elem_id="base-answer")
                    base_info = gr.Markdown(elem_id="base-info")
                with gr.Column():
                    transcript = gr.Textbox(label="Cascade: Whisper transcript", interactive=False,
                                            elem_id="cascade-transcript")
                    cascade = gr.Textbox(label="Cascade: base LLM's answer", interactive=False,
                                         elem_id="cascade-answer")
                    cascade_info = gr.Markdown(elem_id="cascade-info")
            ask.click(on_ask, inputs=[audio, typed],
                      outputs=[salad, salad_info, base, base_info, transcript, cascade, cascade_info])
        return page


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"SALAD folder or Hub id (default {DEFAULT_MODEL}, "
                                                               "written by `make demo`).")
    parser.add_argument("--base-model", help="Base text LLM (default: the SALAD config's base_text_model).")
    parser.add_argument("--asr-model", help="Whisper folder for the cascade (default: salad-assets' Whisper tiny.en).")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="Allow running the model folder's own Python code.")
    parser.add_argument("--tts", default="piper", help="TTS voice BACKEND[:VOICE] that speaks typed questions.")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    return parser


def load_app(args) -> SaladApp:
    from evaluation.cascade import WhisperASR

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}.")
    model, processor = load_salad(check_model_argument(args.model), args.device,
                                  trust_remote_code=args.trust_remote_code)
    base, base_tokenizer = load_base_llm(args.base_model or base_model_name(model.config), args.device)
    asr_path = args.asr_model or default_asr_path()
    asr = WhisperASR.from_pretrained(asr_path) if asr_path else None
    if asr is not None:
        asr.model.to(next(model.parameters()).device)
    return SaladApp(model, processor, base, base_tokenizer, asr, args.tts, args.max_new_tokens)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("salad-app: Gradio is not installed: pip install 'salad-speech[app]'", file=sys.stderr)
        return 2
    try:
        app = load_app(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"salad-app: {error}", file=sys.stderr)
        return 2
    print(f"salad-app: serving {args.model} on http://{args.host}:{args.port}", flush=True)
    app.build_ui().launch(server_name=args.host, server_port=args.port, share=False, show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
