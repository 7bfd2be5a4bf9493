"""Cross-modal distillation (Stage I/II): losses, collator, DistillationTrainer, train entry point.

``trainers.DistillationTrainer`` is SALAD's cross-modal trainer, not TRL's on-policy ``trl.DistillationTrainer``.
"""

from .collator import SpanDocumentCollator
from .config import DataArguments, DistillationConfig, ModelArguments
from .losses import distillation_loss, salad_objective
from .trainer import DistillationTrainer

__all__ = ["DistillationTrainer", "DistillationConfig", "ModelArguments", "DataArguments", "SpanDocumentCollator",
           "distillation_loss", "salad_objective"]
