"""`transformers.pipeline("any-to-any")` answers a chat message with an audio part, as for Qwen2-Audio / Voxtral."""

import json

import soundfile as sf
import torch

from conftest import make_tiny_salad, sine


def _conversation(path):
    return [{"role": "user", "content": [{"type": "audio", "path": str(path)},
                                         {"type": "text", "text": " What was said?"}]}]


def test_any_to_any_pipeline_answers_an_audio_message(tmp_path):
    from transformers import pipeline

    model, processor = make_tiny_salad(adapter_type="transformer")
    folder = tmp_path / "salad-tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModelForMultimodalLM"] == \
        "modeling_salad.SaladForCausalLM"
    clip = tmp_path / "question.wav"
    sf.write(clip, sine(0.8), 16000)

    pipe = pipeline("any-to-any", model=str(folder), trust_remote_code=True)
    out = pipe(text=_conversation(clip), max_new_tokens=5, do_sample=False)
    reply = out[0]["generated_text"][-1]
    assert reply["role"] == "assistant" and isinstance(reply["content"], str)

    inputs = processor.apply_chat_template(_conversation(clip), add_generation_prompt=True, tokenize=True)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    expected = processor.tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert reply["content"] == expected
