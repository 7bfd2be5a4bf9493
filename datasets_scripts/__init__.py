"""Synthetic speech data: TTS backends, salad-synth, spoken benchmarks, active selection, cards, publishing."""
