"""Configuration dataclasses: DistillationConfig (trainer), ModelArguments and DataArguments (train.py)."""

from __future__ import annotations

import json

from dataclasses import dataclass, field

from trl import SFTConfig

__all__ = ["DistillationConfig", "ModelArguments", "DataArguments", "TEACHER_MODES", "TRAINABLE_CHOICES"]

TEACHER_MODES = ("frozen_copy", "base", "shared")
_DEFAULT_TEACHER = {"adapter": "shared", "adapter+lora": "base", "adapter+llm": "frozen_copy", "llm": "frozen_copy"}
TRAINABLE_CHOICES = ("adapter", "adapter+llm", "adapter+lora", "llm")
KD_IMPLEMENTATIONS = ("fused", "liger", "materialized")


@dataclass
class DistillationConfig(SFTConfig):
    r"""Configuration of SALAD's cross-modal [`~trainers.DistillationTrainer`] (Stage I and Stage II).

    Extends `trl.SFTConfig`; `learning_rate` is the LLM's learning rate, `adapter_learning_rate` the adapter's.
    """

    alpha: float = field(default=1.0, metadata={"help": "Weight of the distillation loss; the NLL gets 1 - alpha "
                                                        "(paper: 1.0 in both stages)."})
    beta: float = field(default=0.0, metadata={"help": "Generalized JSD skew: 0 = KL(teacher || student) (paper), "
                                                       "1 = KL(student || teacher)."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the distillation loss "
                                                              "(loss is scaled by temperature**2)."})
    teacher_mode: str | None = field(default=None, metadata={
        "help": "Where the teacher comes from: 'frozen_copy' (a frozen copy of the initial LLM; needed when the "
                "LLM is fully fine-tuned, as in the paper), 'base' (the LLM with its LoRA adapters disabled), "
                "'shared' (the student's own LLM, valid only while the LLM is frozen). Leave unset with "
                "teacher_model_name_or_path. Default: 'shared' for trainable=adapter, 'base' for adapter+lora, "
                "'frozen_copy' for adapter+llm and llm."})
    teacher_model_name_or_path: str | None = field(default=None, metadata={
        "help": "A text LLM (folder or Hub id) with the student's tokenizer to use as the teacher instead of a "
                "teacher_mode, e.g. the base LLM when a later stage starts from a checkpoint whose LLM has trained."})
    kd_chunk_size: int | None = field(default=128, metadata={"help": "Positions per chunk of the loss: the "
                                                                     "[chunk, vocabulary] float32 logits alive at a "
                                                                     "time; 0/None = one chunk (naive)."})
    kd_implementation: str = field(default="fused", metadata={
        "help": "'fused' (the LM heads applied to the final hidden states chunk by chunk inside the loss: no "
                "[positions, vocabulary] logits), 'liger' (Liger-Kernel's fused linear JSD; CUDA and alpha=1 "
                "only) or 'materialized' (logits at the distilled positions, then the loss)."})
    trainable: str = field(default="adapter", metadata={
        "help": "What trains: 'adapter' (LLM frozen), 'adapter+llm' (full fine-tuning, paper), 'adapter+lora', or "
                "'llm' (the whole LLM, adapter frozen: for an adapter that already maps speech into the LLM's "
                "input space, e.g. adapter_type='transcript')."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (trainable=adapter+lora)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (trainable=adapter+lora)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (trainable=adapter+lora)."})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "LLM module names LoRA wraps (default: attention and MLP projections)."})
    projector_lora_r: int = field(default=0, metadata={
        "help": "LoRA rank on the adapter's linear layers while it trains (e.g. the Whisper decoder of "
                "adapter_type='posterior'); 0 = the adapter trains in full. The base weights stay frozen, the "
                "adapter's own small parameters (posterior temperature, filler) train in full, and checkpoints "
                "hold merged weights."})
    projector_lora_alpha: float | None = field(default=None, metadata={
        "help": "LoRA alpha of the adapter's LoRA; None = 2 * projector_lora_r."})
    projector_lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "Adapter module names its LoRA wraps (default: every linear layer for which a rank-"
                "projector_lora_r LoRA is smaller than the layer; for 'posterior', the Whisper decoder's q/k/v/"
                "out_proj, fc1 and fc2)."})
    adapter_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the adapter (paper: 1e-3 for 3B, 1e-4 for 7B); None = learning_rate."})
    adapter_parameter_learning_rates: dict | str | None = field(default=None, metadata={
        "help": "Learning rates of single adapter parameters by name inside the adapter, overriding "
                "adapter_learning_rate, e.g. {\"filler\": 1e-3, \"log_temperature\": 1e-3} so that a posterior "
                "front end's new filler and temperature move while its pretrained Whisper decoder trains slowly "
                "(a JSON object on the command line)."})
    text_replay_ratio: float = field(default=1 / 3, metadata={
        "help": "Fraction of training documents drawn from the text-only replay set (paper: 1/3)."})
    decay_fraction: float = field(default=0.2, metadata={
        "help": "With lr_scheduler_type=warmup_stable_decay: fraction of max_steps spent in the final linear "
                "decay to 0 (paper: 0.2; Stage II: 1.0)."})
    save_pre_decay_checkpoint: bool = field(default=True, metadata={
        "help": "Save <output_dir>/checkpoint-pre-decay when the WSD decay starts (Stage II starts from it)."})
    diagnostics_steps: int = field(default=0, metadata={
        "help": "Every N steps, log diagnostics M (misalignment) and F (forgetting) on the probe set; 0 = off."})
    probe_size: int = field(default=8, metadata={"help": "Documents in the fixed diagnostics probe set."})
    speech_policy: str = field(default="alternate", metadata={
        "help": "Which spans with audio the student hears: 'alternate' (paper), 'all' or 'random'."})
    speech_probability: float = field(default=1.0, metadata={
        "help": "Chance that a span eligible under speech_policy is heard."})
    padding_side: str = field(default="right", metadata={"help": "Padding side of the collated batches."})

    def __post_init__(self):
        # The collator needs the raw span documents and builds labels itself.
        self.remove_unused_columns = False
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        if self.kd_chunk_size == 0:
            self.kd_chunk_size = None
        super().__post_init__()
        if self.learning_rate < 0:
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate}")
        if self.adapter_learning_rate is not None and self.adapter_learning_rate < 0:
            raise ValueError(f"adapter_learning_rate must be >= 0, got {self.adapter_learning_rate}")
        self.adapter_parameter_learning_rates = parse_parameter_learning_rates(self.adapter_parameter_learning_rates)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.trainable not in TRAINABLE_CHOICES:
            raise ValueError(f"trainable must be one of {TRAINABLE_CHOICES}, got {self.trainable!r}")
        self._validate_teacher()
        self._validate_projector_lora()
        if not 0.0 <= self.text_replay_ratio < 1.0:
            raise ValueError(f"text_replay_ratio must be in [0, 1), got {self.text_replay_ratio}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.kd_chunk_size is not None and self.kd_chunk_size < 1:
            raise ValueError(f"kd_chunk_size must be >= 1 or 0/None, got {self.kd_chunk_size}")
        if self.kd_implementation not in KD_IMPLEMENTATIONS:
            raise ValueError(f"kd_implementation must be one of {KD_IMPLEMENTATIONS}, got {self.kd_implementation!r}")
        if self.kd_implementation == "liger" and self.alpha != 1.0:
            raise ValueError("kd_implementation='liger' computes the distillation term only; it needs alpha=1")
        if self.diagnostics_steps < 0:
            raise ValueError("diagnostics_steps must be >= 0")

    def _validate_projector_lora(self) -> None:
        """Rank >= 0 (0 = off); a LoRA only on an adapter that trains; alpha > 0; target names only with a rank."""
        if self.projector_lora_r < 0:
            raise ValueError(f"projector_lora_r must be >= 0 (0 = the adapter trains in full), "
                             f"got {self.projector_lora_r}")
        if self.projector_lora_r == 0:
            if self.projector_lora_target_modules is not None:
                raise ValueError("projector_lora_target_modules needs projector_lora_r > 0")
            return
        if self.trainable == "llm":
            raise ValueError("projector_lora_r > 0 needs an adapter that trains; trainable='llm' freezes it (use "
                             "'adapter', 'adapter+lora' or 'adapter+llm')")
        if self.projector_lora_alpha is None:
            self.projector_lora_alpha = 2 * self.projector_lora_r
        if self.projector_lora_alpha <= 0:
            raise ValueError(f"projector_lora_alpha must be > 0, got {self.projector_lora_alpha}")
        if self.projector_lora_target_modules is not None and not self.projector_lora_target_modules:
            raise ValueError("projector_lora_target_modules is empty; leave it unset for the default layers")

    def _validate_teacher(self) -> None:
        """The teacher is a mode or a model, never both; a mode must suit `trainable` (default: from it)."""
        if self.teacher_model_name_or_path:
            if self.teacher_mode is not None:
                raise ValueError(f"give teacher_mode or teacher_model_name_or_path, not both (got teacher_mode="
                                 f"{self.teacher_mode!r}, teacher_model_name_or_path="
                                 f"{self.teacher_model_name_or_path!r})")
            return
        if self.teacher_mode is None:
            self.teacher_mode = _DEFAULT_TEACHER[self.trainable]
        if self.teacher_mode not in TEACHER_MODES:
            raise ValueError(f"teacher_mode must be one of {TEACHER_MODES}, got {self.teacher_mode!r}; a teacher "
                             "model (folder or Hub id) goes in teacher_model_name_or_path")
        if self.teacher_mode == "shared" and self.trainable != "adapter":
            raise ValueError("teacher_mode='shared' needs a frozen LLM (trainable='adapter'); the teacher would drift")
        if self.teacher_mode == "base" and self.trainable != "adapter+lora":
            raise ValueError("teacher_mode='base' (LoRA disabled) needs trainable='adapter+lora'")


@dataclass
class ModelArguments:
    """Which model to train: a SALAD checkpoint, or a SALAD model built from a text LLM and a speech encoder."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A SALAD checkpoint (folder or Hub id) to start from, e.g. a Stage I checkpoint-pre-decay."})
    text_model_name_or_path: str | None = field(default=None, metadata={
        "help": "Text LLM to build a new SALAD model from (e.g. Qwen/Qwen2.5-3B)."})
    audio_encoder_name_or_path: str | None = field(default=None, metadata={
        "help": "Speech encoder to build from (e.g. kyutai/mimi or openai/whisper-small)."})
    adapter_type: str = field(default="transformer", metadata={"help": "'transformer' (paper) or 'mlp'."})
    adapter_num_layers: int = field(default=12, metadata={"help": "Transformer adapter depth (paper: 12)."})
    adapter_hidden_size: int = field(default=960, metadata={"help": "Adapter width (paper: 960)."})
    stack_factor: int | None = field(default=None, metadata={"help": "Encoder frames per LLM position."})
    tiny_random: bool = field(default=False, metadata={
        "help": "Build a tiny random model and tokenizer in code (tests, smoke runs; no downloads)."})
    dtype: str = field(default="auto", metadata={"help": "Weights dtype: auto, bfloat16, float16 or float32."})


@dataclass
class DataArguments:
    """Training data: natural speech (Stage I), synthetic span sets (Stage II) and text replay."""

    speech_datasets: list[str] | None = field(default=None, metadata={
        "help": "Natural-speech datasets (local folder/file or Hub id) with audio + transcript rows, grouped into "
                "span documents by group_column and ordered by order_column."})
    speech_split: str = field(default="train", metadata={"help": "Split of the speech datasets."})
    speech_config: str | None = field(default=None, metadata={"help": "Config name of the speech datasets."})
    audio_column: str = field(default="audio", metadata={"help": "Audio column of the speech datasets."})
    text_column: str = field(default="text", metadata={"help": "Transcript column of the speech datasets."})
    group_column: str | None = field(default=None, metadata={
        "help": "Column naming the recording/book (consecutive utterances form one document); None = one row "
                "per document."})
    order_column: str | None = field(default=None, metadata={"help": "Column ordering utterances in a group."})
    utterances_per_document: int = field(default=8, metadata={"help": "Utterances per span document."})
    span_datasets: list[str] | None = field(default=None, metadata={
        "help": "Span datasets (datasets_scripts layout: doc_id, span_index, text, audio), e.g. Stage II "
                "active-selected synthetic speech."})
    replay_dataset: str | None = field(default=None, metadata={
        "help": "Text-only replay corpus (paper: SmolLM corpus); mixed in at text_replay_ratio."})
    replay_text_column: str = field(default="text", metadata={"help": "Text column of the replay dataset."})
    replay_split: str = field(default="train", metadata={"help": "Split of the replay dataset."})
    replay_config: str | None = field(default=None, metadata={"help": "Config name of the replay dataset."})
    streaming: bool = field(default=False, metadata={"help": "Stream the datasets instead of downloading."})
    max_documents: int | None = field(default=None, metadata={"help": "Cap on documents per source (debug)."})
    feature_cache_dir: str | None = field(default=None, metadata={
        "help": "Encoder-state cache folder (keyed by clip content and encoder): before the first step, the "
                "clips the run's steps will hear are encoded into it in batches, and training reads them (skips "
                "the encoder at train time)."})
    tiny_documents: int = field(default=0, metadata={
        "help": "Generate this many synthetic span documents in code (sine-tone 'speech'; smoke runs)."})


def parse_parameter_learning_rates(value) -> dict[str, float] | None:
    """`adapter_parameter_learning_rates` as {name: rate}: a dict, or its JSON text (the CLI form)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"adapter_parameter_learning_rates must be a JSON object such as "
                             f"'{{\"filler\": 1e-3}}', got {value!r} ({error.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"adapter_parameter_learning_rates must be a mapping of parameter name to learning rate, "
                         f"got {type(value).__name__}")
    bad = {k: v for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
    if bad:
        raise ValueError(f"adapter_parameter_learning_rates: learning rates must be numbers >= 0, got {bad}")
    return {str(k): float(v) for k, v in value.items()}
