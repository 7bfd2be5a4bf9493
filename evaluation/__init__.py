"""Spoken multiple-choice evaluation: scorer, text-speech gap, ASR cascade, plots (salad-eval)."""
