"""Cross-modal distillation (Stage I/II): losses, collator, DistillationTrainer, train entry point."""
