"""benchmarks/number_forms.py: splitting spoken-arithmetic items by how the transcript writes the numbers."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "number_forms.py"
_spec = importlib.util.spec_from_file_location("salad_benchmarks_number_forms", _PATH)
number_forms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(number_forms)
split_by_number_form = number_forms.split_by_number_form


def _record(transcript, speech, text):
    return {"cascade": {"transcript": transcript}, "speech": {"correct": speech}, "base_text": {"correct": text}}


def test_split_by_number_form_counts_word_and_digit_transcripts_apart():
    records = [_record("What is zero times eight?", False, True), _record("What is Seven times 2?", True, True),
               _record("What is 3 times 4?", True, True), _record("What is 6 times 0?", False, False)]
    parts = split_by_number_form(records)
    assert parts["words"] == {"n": 2, "speech_acc": 50.0, "base_text_acc": 100.0}
    assert parts["digits"] == {"n": 2, "speech_acc": 50.0, "base_text_acc": 50.0}
    assert split_by_number_form([])["words"] == {"n": 0, "speech_acc": None, "base_text_acc": None}


def test_digit_bias_moves_only_one_token_digits():
    import torch

    class Tokenizer:  # " d" is one token d; "d" is two pieces for even d (skipped), one token 10 + d for odd d
        def encode(self, text, add_special_tokens=False):
            d = int(text.strip())
            return [d] if text.startswith(" ") else ([30, 31] if d % 2 == 0 else [10 + d])

    model = SimpleNamespace(multi_modal_projector=SimpleNamespace(logit_bias=torch.zeros(32)))
    assert number_forms.add_digit_bias(model, Tokenizer(), 0.5) == 15
    moved = set(range(10)) | {11, 13, 15, 17, 19}
    assert model.multi_modal_projector.logit_bias.tolist() == [0.5 if i in moved else 0.0 for i in range(32)]
    with pytest.raises(SystemExit, match="no logit bias"):
        number_forms.add_digit_bias(SimpleNamespace(multi_modal_projector=SimpleNamespace()), Tokenizer(), 1.0)


def test_own_transcript_reads_the_checkpoints_own_greedy_tokens():
    import torch

    from test_posterior_adapter import tiny_model

    model, processor = tiny_model(posterior_temperature=0.5, posterior_top_k=8, posterior_numeral_bias=True)
    wave = torch.sin(torch.arange(16000) * 0.05).numpy()

    class Tokenizer:
        def decode(self, ids):
            return ",".join(map(str, ids))

    before = number_forms.own_transcript(model, processor, wave, 16000, Tokenizer())
    assert before and all(int(t) < 50 for t in before.split(","))
    with torch.no_grad():
        model.multi_modal_projector.numeral_tokens[7] = 1.0
        model.multi_modal_projector.numeral_bias.fill_(1e4)
    after = number_forms.own_transcript(model, processor, wave, 16000, Tokenizer())
    assert set(after.split(",")) == {"7"}


def test_set_numeral_bias_fills_the_one_scalar_and_refuses_front_ends_without_it():
    import torch

    model = SimpleNamespace(multi_modal_projector=SimpleNamespace(numeral_bias=torch.nn.Parameter(torch.zeros(()))))
    number_forms.set_numeral_bias(model, 1.25)
    assert model.multi_modal_projector.numeral_bias.item() == 1.25
    with pytest.raises(SystemExit, match="no numeral bias"):
        number_forms.set_numeral_bias(SimpleNamespace(multi_modal_projector=SimpleNamespace()), 1.0)


def test_kl_and_accuracy_is_the_mean_choice_kl_from_base_text_to_speech():
    import math

    same = {"base_text": {"logprobs": [-1.0, -2.0]}, "speech": {"logprobs": [-1.0, -2.0], "correct": True}}
    flipped = {"base_text": {"logprobs": [0.0, -100.0]}, "speech": {"logprobs": [-math.log(2)] * 2,
                                                                     "correct": False}}
    accuracy, kl = number_forms.kl_and_accuracy([same, flipped])
    assert accuracy == 50.0
    assert kl == pytest.approx(math.log(2) / 2)
