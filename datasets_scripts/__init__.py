"""Synthetic speech data: span splitter, TTS backends, salad-synth, spoken benchmarks, active selection, cards, publishing."""
