"""The embedded default: real small pretrained parts from packages, and the end-to-end `make demo` pipeline."""
