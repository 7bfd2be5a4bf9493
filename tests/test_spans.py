"""The one span splitter: alternating speech (5-15 words) and text (10-30 words) spans, seeded and deterministic."""

import pytest

from spans import split_into_spans

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()
DOCUMENT = " ".join(WORDS[i % len(WORDS)] for i in range(400))  # no sentence ends: word boundaries only


def test_alternating_kinds_and_length_ranges():
    for seed in range(20):
        spans = split_into_spans(DOCUMENT, seed=seed)
        kinds = [s["kind"] for s in spans]
        assert all(a != b for a, b in zip(kinds, kinds[1:]))
        for span in spans[:-1]:
            n = len(span["text"].split())
            assert (5 <= n <= 15) if span["kind"] == "speech" else (10 <= n <= 30)
        assert " ".join(s["text"] for s in spans) == DOCUMENT


def test_deterministic_per_seed_and_different_across_seeds():
    assert split_into_spans(DOCUMENT, seed=7) == split_into_spans(DOCUMENT, seed=7)
    assert len({tuple(s["text"] for s in split_into_spans(DOCUMENT, seed=s)) for s in range(10)}) > 5
    first_kinds = {split_into_spans(DOCUMENT, seed=s)[0]["kind"] for s in range(20)}
    assert first_kinds == {"speech", "text"}
    assert split_into_spans(DOCUMENT, seed=3, first="text")[0]["kind"] == "text"


def test_prefers_sentence_boundaries():
    sentence = "The cat sat on the quiet mat today."  # 8 words: fits both ranges
    doc = " ".join([sentence] * 20)
    for seed in range(10):
        for span in split_into_spans(doc, seed=seed):
            assert span["text"].endswith(".")


def test_custom_ranges_whitespace_and_short_documents():
    spans = split_into_spans("one  two\nthree\tfour", seed=0, speech_words=(1, 1), text_words=(2, 2), first="speech")
    assert spans == [{"text": "one", "kind": "speech"}, {"text": "two three", "kind": "text"},
                     {"text": "four", "kind": "speech"}]
    assert split_into_spans("Just three words.", seed=1) == [{"text": "Just three", "kind": "speech"},
                                                             {"text": "words.", "kind": "text"}]


@pytest.mark.parametrize("kwargs, message", [({"text": ""}, "empty"), ({"text": "   "}, "empty"),
                                             ({"text": "a b", "speech_words": (0, 3)}, "speech_words"),
                                             ({"text": "a b", "text_words": (9, 3)}, "text_words"),
                                             ({"text": "a b", "first": "audio"}, "first")])
def test_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_into_spans(**kwargs)


def test_a_short_document_becomes_speech_then_text():
    from spans import split_into_spans

    for seed in range(5):
        spans = split_into_spans("Which planet is the largest in the solar system? Jupiter", seed=seed)
        kinds = [s["kind"] for s in spans]
        assert any(a == "speech" and b == "text" for a, b in zip(kinds, kinds[1:])), kinds
        assert " ".join(s["text"] for s in spans) == "Which planet is the largest in the solar system? Jupiter"
    assert [s["kind"] for s in split_into_spans("Hello", seed=0)] in (["speech"], ["text"])
