"""benchmarks/number_forms.py: splitting spoken-arithmetic items by how the transcript writes the numbers."""

import importlib.util
from pathlib import Path

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
