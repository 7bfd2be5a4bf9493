"""Stage I training-step throughput of SALAD at real shapes (random init, no downloads).

One step as the distillation trainer runs it: frozen encoder (no_grad) -> adapter -> student LLM forward on mixed
speech/text documents; teacher LLM forward on the all-text documents (no_grad); KL at the positions whose next
token is text, by default fused (``trainers.losses.fused_distillation_loss``: the final hidden states go through
both LM heads chunk by chunk inside the loss; ``--kd-impl materialized``: logits, then
``trainers.losses.distillation_loss``); backward; AdamW step. bf16 autocast.

    python benchmarks/train_throughput.py --model 3b --encoder mimi --seq-len 2048 --batch 4 --grad-ckpt

Prints per-phase times and one markdown row ``| device | model | config | tokens/s | MFU | peak mem | command |``.
FLOPs: ``benchmarks/flops.py`` (6·N per trained token, 2·N frozen forward, causal attention, LM head at the
distilled positions only, frozen encoder counted by ``torch.utils.flop_counter``); tokens = real (non-padding)
student positions. See benchmarks/README_scale.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import random
import resource
import shlex
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flops as F  # noqa: E402

MODEL_CHOICES = ("tiny", "small", "3b", "7b")


# --------------------------------------------------------------------------------------------- model shapes
def text_config(name: str, attn: str):
    from transformers import Qwen2Config

    dims = {
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=128, vocab_size=1024, tie_word_embeddings=True),
        "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=704, vocab_size=8192, tie_word_embeddings=True),
        "3b": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                   intermediate_size=11008, vocab_size=151936, tie_word_embeddings=True),
        "7b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                   intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False),
    }[name]
    config = Qwen2Config(max_position_embeddings=32768, rope_theta=1e6, **dims)
    config._attn_implementation = attn
    return config


def audio_config(name: str, encoder: str):
    from transformers import MimiConfig, WhisperConfig

    small = name in ("tiny", "small")
    if encoder == "mimi":  # real Mimi: 24 kHz in, 12.5 Hz x 512-dim latents out
        if small:
            return MimiConfig(hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=32,
                              num_attention_heads=2, num_key_value_heads=2, head_dim=16, codebook_dim=16,
                              vector_quantization_hidden_dimension=16, num_quantizers=2, codebook_size=16,
                              upsample_groups=32)
        return MimiConfig()
    if small:
        return WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                             decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                             vocab_size=64, max_target_positions=64, bos_token_id=1, eos_token_id=1,
                             pad_token_id=1, decoder_start_token_id=2)
    # Whisper large-v3 encoder (the encoder of large-v3-turbo too): 128 mels, 32 x 1280-wide layers, 50 Hz
    return WhisperConfig(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                         decoder_layers=2, decoder_attention_heads=20, decoder_ffn_dim=5120, num_mel_bins=128,
                         vocab_size=51866)


def adapter_kwargs(name: str) -> dict:
    if name in ("tiny", "small"):
        return dict(adapter_num_layers=2, adapter_hidden_size=64, adapter_intermediate_size=128,
                    adapter_num_attention_heads=2)
    # paper: 12 layers, width 960, MLP 2560, 15 heads (5 KV heads: SaladConfig has no KV-head field yet)
    return dict(adapter_num_layers=12, adapter_hidden_size=960, adapter_intermediate_size=2560,
                adapter_num_attention_heads=15)


def build_models(args, device):
    """(student SaladForCausalLM in train mode, frozen bf16 teacher, flops shapes)."""
    from transformers import AutoModelForCausalLM

    from modeling_salad.configuration_salad import SaladConfig
    from modeling_salad.modeling_salad import SaladForCausalLM

    tconf = text_config(args.model, args.attn)
    config = SaladConfig(text_config=tconf, audio_config=audio_config(args.model, args.encoder),
                         adapter_type="transformer", audio_token_id=tconf.vocab_size - 1, audio_padding="none",
                         **adapter_kwargs(args.model))
    param_dtype = torch.bfloat16 if args.param_dtype == "bf16" else torch.float32
    torch.manual_seed(args.seed)
    with torch.device(device):
        student = SaladForCausalLM(config).to(param_dtype)
        teacher = AutoModelForCausalLM.from_config(copy.deepcopy(tconf)).to(torch.bfloat16)
    teacher.load_state_dict(student.language_model.state_dict())
    teacher.requires_grad_(False).eval()
    student.audio_tower.to(torch.bfloat16).eval()
    student.train()
    lm_cfg = config.text_config
    llm_shape = F.DecoderShape(hidden_size=lm_cfg.hidden_size, num_layers=lm_cfg.num_hidden_layers,
                               num_heads=lm_cfg.num_attention_heads, num_kv_heads=lm_cfg.num_key_value_heads,
                               intermediate_size=lm_cfg.intermediate_size, vocab_size=lm_cfg.vocab_size,
                               head_dim=getattr(lm_cfg, "head_dim", None))
    adapter_shape = F.DecoderShape(hidden_size=config.adapter_hidden_size, num_layers=config.adapter_num_layers,
                                   num_heads=config.adapter_num_attention_heads,
                                   num_kv_heads=config.adapter_num_attention_heads,
                                   intermediate_size=config.adapter_intermediate_size,
                                   input_size=config.audio_hidden_size * config.stack_factor,
                                   output_size=lm_cfg.hidden_size)
    return student, teacher, llm_shape, adapter_shape


class StudentStep(nn.Module):
    """Adapter + LLM with the LM head applied at the distilled positions only (one module, so FSDP can wrap it)."""

    def __init__(self, salad):
        super().__init__()
        self.salad = salad

    def forward(self, input_ids, states, states_mask, kd_index, attention_mask=None, position_ids=None, kd=None):
        """Logits at ``kd_index``; with ``kd`` (the fused path: a callable of the student's hidden states and head
        weight) its loss, computed inside the forward so that FSDP's unsharded weights are in place."""
        salad = self.salad
        placeholder = input_ids == salad.config.audio_token_id
        embeds = salad.get_input_embeddings()(input_ids.masked_fill(placeholder, 0))
        if states is not None:
            audio = salad.get_audio_features(audio_encoder_states=states, audio_encoder_mask=states_mask)
            embeds = embeds.masked_scatter(placeholder.unsqueeze(-1), audio.to(embeds.dtype))
        hidden = salad.language_model.model(inputs_embeds=embeds, attention_mask=attention_mask,
                                            position_ids=position_ids, use_cache=False).last_hidden_state
        if kd is not None:
            return kd(hidden.flatten(0, 1)[kd_index], salad.language_model.lm_head.weight)
        return salad.language_model.lm_head(hidden.flatten(0, 1)[kd_index])


def teacher_logits(teacher, input_ids, kd_index, attention_mask=None, position_ids=None, hidden_only=False):
    hidden = teacher.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=False).last_hidden_state
    return hidden.flatten(0, 1)[kd_index] if hidden_only else teacher.lm_head(hidden.flatten(0, 1)[kd_index])


# --------------------------------------------------------------------------------------------- synthetic batches
@dataclass
class Document:
    """Spans as (kind, student_len, teacher_len, frames); kind "text" or "speech" (frames = 12.5 Hz frames)."""

    spans: list = field(default_factory=list)

    @property
    def student_len(self) -> int:
        return sum(s[1] for s in self.spans)

    @property
    def teacher_len(self) -> int:
        return sum(s[2] for s in self.spans)


def make_document(rng: random.Random, target_len: int, text_replay: bool) -> Document:
    """Paper layout: text spans 10-30 words (1.3 tokens/word), speech spans 5-15 words at 2.5 words/s (12.5 Hz
    frames); teacher reads a speech span as 1.3 tokens/word. Text replay documents are one text span."""
    if text_replay:
        return Document([("text", target_len, target_len, 0)])
    doc, speech = Document(), rng.random() < 0.5
    while doc.student_len < target_len and doc.teacher_len < target_len:
        room = target_len - max(doc.student_len, doc.teacher_len)
        if speech:
            words = rng.randint(5, 15)
            frames = min(room, max(1, round(words / 2.5 * 12.5)))  # a span at the document end is cut short
            doc.spans.append(("speech", frames, max(1, round(frames / 12.5 * 2.5 * 1.3)), frames))
        else:
            tokens = min(room, max(1, round(rng.randint(10, 30) * 1.3)))
            doc.spans.append(("text", tokens, tokens, 0))
        speech = not speech
    if not doc.spans:
        doc.spans.append(("text", target_len, target_len, 0))
    return doc


def documents_for_rows(rng, args) -> list[list[Document]]:
    """One document per row (padded) or, with --packing, as many as fill each row."""
    rows = []
    for _ in range(args.batch):
        if not args.packing:
            rows.append([make_document(rng, rng.randint(args.seq_len // 4, args.seq_len), rng.random() < 1 / 3)])
            continue
        row, used = [], 0
        while args.seq_len - used >= 16:
            length = min(args.seq_len - used, rng.randint(args.seq_len // 4, args.seq_len))
            doc = make_document(rng, length, rng.random() < 1 / 3)
            row.append(doc)
            used += max(doc.student_len, doc.teacher_len)
        rows.append(row)
    return rows


@dataclass
class Batch:
    student: dict
    teacher: dict
    audio: dict
    stats: dict


def _layout(rows, side: str, vocab: int, audio_id: int, rng, packing: bool, text_ids: dict):
    """Token rows for one side ("student"/"teacher"), position/attention tensors and per-span start offsets."""
    width = max(sum(getattr(d, f"{side}_len") for d in row) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    starts, doc_lengths = [], []
    for r, row in enumerate(rows):
        offset = 0
        for d, doc in enumerate(row):
            length = getattr(doc, f"{side}_len")
            positions[r, offset:offset + length] = torch.arange(length)
            doc_lengths.append(length)
            for s, (kind, n_student, n_teacher, _) in enumerate(doc.spans):
                n = n_student if side == "student" else n_teacher
                if kind == "text":
                    key = (r, d, s)
                    text_ids.setdefault(key, torch.randint(0, vocab - 1, (n,), generator=rng))
                    ids[r, offset:offset + n] = text_ids[key]
                    starts.append((key, r * width + offset, n))
                elif side == "student":
                    ids[r, offset:offset + n] = audio_id
                else:
                    ids[r, offset:offset + n] = torch.randint(0, vocab - 1, (n,), generator=rng)
                offset += n
        mask[r, :offset] = 1
    tensors = {"input_ids": ids}
    if packing:
        tensors["position_ids"] = positions  # attention_mask None: transformers builds per-document masks
    else:
        tensors["attention_mask"] = mask
    return tensors, starts, doc_lengths


def make_batch(rows, args, config, device, generator) -> Batch:
    vocab, audio_id = config.text_config.vocab_size, config.audio_token_id
    text_ids: dict = {}
    student, s_starts, s_docs = _layout(rows, "student", vocab, audio_id, generator, args.packing, text_ids)
    teacher, t_starts, t_docs = _layout(rows, "teacher", vocab, audio_id, generator, args.packing, text_ids)
    s_index, t_index = [], []
    for (key, s0, n), (key_t, t0, n_t) in zip(s_starts, t_starts):
        assert key == key_t and n == n_t
        s_index.extend(range(s0, s0 + n - 1))  # next token text, inside the same text span
        t_index.extend(range(t0, t0 + n - 1))
    student["kd_index"] = torch.tensor(s_index, dtype=torch.long)
    teacher["kd_index"] = torch.tensor(t_index, dtype=torch.long)
    assert torch.equal(student["input_ids"].flatten()[student["kd_index"]],
                       teacher["input_ids"].flatten()[teacher["kd_index"]])
    frames = [span[3] for row in rows for doc in row for span in doc.spans if span[0] == "speech"]
    audio = make_audio(frames, args, config, generator)
    stats = {"student_docs": s_docs, "teacher_docs": t_docs, "kd": len(s_index), "clip_frames": frames,
             "tokens": sum(s_docs)}
    to = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
    return Batch(to(student), to(teacher), to(audio), stats)


def make_audio(frames: list[int], args, config, generator) -> dict:
    """Encoder inputs whose adapter output is exactly `frames` tokens per clip (one clip per speech span)."""
    n, stack = len(frames), config.stack_factor
    if n == 0:  # a batch of text-replay documents only
        return {}
    if args.precomputed_features:
        per_clip = [f * stack for f in frames]  # encoder frames
        states = torch.randn(n, max(per_clip), config.audio_hidden_size, generator=generator)
        mask = torch.arange(max(per_clip))[None, :] < torch.tensor(per_clip)[:, None]
        return {"states": states.to(torch.bfloat16), "mask": mask}
    if config.audio_encoder_type == "mimi":
        hop = round(config.audio_config.sampling_rate / config.audio_config.frame_rate)  # 1920 samples / frame
        lengths = [f * hop for f in frames]
        values = torch.randn(n, 1, max(lengths), generator=generator) * 0.1
    else:
        lengths = [f * stack * 2 for f in frames]  # 100 Hz mel -> 50 Hz encoder -> 12.5 Hz after stacking
        values = torch.randn(n, config.audio_config.num_mel_bins, max(lengths), generator=generator)
    mask = torch.arange(values.shape[-1])[None, :] < torch.tensor(lengths)[:, None]
    return {"features": values, "features_mask": mask.long()}


# --------------------------------------------------------------------------------------------- setup options
def make_optimizer(args, student):
    adapter = [p for p in student.multi_modal_projector.parameters() if p.requires_grad]
    llm = [p for p in student.language_model.parameters() if p.requires_grad]
    groups = [{"params": adapter, "lr": args.adapter_lr}, {"params": llm, "lr": args.llm_lr}]
    if args.optim == "adamw":
        fused = args.device.startswith("cuda")
        return torch.optim.AdamW(groups, weight_decay=0.1, fused=fused or None)
    if importlib.util.find_spec("bitsandbytes"):
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, weight_decay=0.1)
    if importlib.util.find_spec("torchao"):
        from torchao.optim import AdamW8bit

        return AdamW8bit(groups, weight_decay=0.1)
    raise ValueError("--optim adamw_8bit needs bitsandbytes or torchao installed (neither is)")


def check_attention(args):
    if args.attn == "flash_attention_2" and not importlib.util.find_spec("flash_attn"):
        raise ValueError("--attn flash_attention_2 needs the flash-attn package (not installed here)")
    if args.attn == "flash_attention_2" and not args.device.startswith("cuda"):
        raise ValueError("--attn flash_attention_2 runs on CUDA only")


def apply_fsdp(step_module, args):
    """1-process FSDP2: every LLM / adapter decoder layer its own group, then the student step as the root."""
    import torch.distributed as dist
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo", rank=0, world_size=1)
    kwargs = {"mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)}
    if args.fsdp_cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    salad = step_module.salad
    for layer in list(salad.language_model.model.layers) + list(salad.multi_modal_projector.decoder.layers):
        fully_shard(layer, **kwargs)
    fully_shard(step_module, ignored_params=set(salad.audio_tower.parameters()), **kwargs)


def setup(args):
    check_attention(args)
    device = torch.device(args.device)
    student, teacher, llm_shape, adapter_shape = build_models(args, device)
    if args.grad_ckpt:
        ckpt = {"activation_checkpointing_kwargs": {"use_reentrant": False}, "every_n_layers": args.grad_ckpt_every}
        student.language_model.activation_checkpointing_enable(**ckpt)
        student.multi_modal_projector.decoder.activation_checkpointing_enable(**ckpt)
    step_module = StudentStep(student)
    if args.fsdp:
        apply_fsdp(step_module, args)
    if args.compile:  # regional compilation: one compiled graph reused by every decoder layer
        for layer in (list(student.language_model.model.layers) + list(teacher.model.layers)
                      + list(student.multi_modal_projector.decoder.layers)):
            layer.compile(dynamic=args.packing or None)
    optimizer = make_optimizer(args, student)
    return student, teacher, step_module, optimizer, llm_shape, adapter_shape


# --------------------------------------------------------------------------------------------- the step
class PhaseTimer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.times: dict[str, float] = {}

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def phase(self, name):
        timer = self

        class _Phase:
            def __enter__(self):
                timer.sync()
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.sync()
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.start

        return _Phase()


def load_losses():
    """``trainers.losses``; loaded from its file when the ``trainers`` package cannot be imported (its
    ``__init__`` pulls in trl/datasets/pyarrow, which a bare GPU image may lack; losses.py needs torch only)."""
    try:
        from trainers import losses
        return losses
    except ImportError:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trainers", "losses.py")
        spec = importlib.util.spec_from_file_location("salad_trainers_losses", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


def train_step(batch: Batch, student, teacher, step_module, optimizer, args, timer: PhaseTimer):
    if args.kd_impl == "fused":
        return fused_train_step(batch, student, teacher, step_module, optimizer, args, timer)
    distillation_loss = load_losses().distillation_loss
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    autocast = torch.autocast(device_type, dtype=torch.bfloat16)
    states, states_mask = encoder_states(batch, student, args, timer, autocast)
    s = batch.student
    with timer.phase("teacher"), torch.no_grad(), autocast:
        t_logits = teacher_logits(teacher, batch.teacher["input_ids"], batch.teacher["kd_index"],
                                  batch.teacher.get("attention_mask"), batch.teacher.get("position_ids"))
    with timer.phase("student_fwd"), autocast:
        s_logits = step_module(s["input_ids"], states, states_mask, s["kd_index"], s.get("attention_mask"),
                               s.get("position_ids"))
    with timer.phase("loss"):
        loss = distillation_loss(s_logits, t_logits, chunk_size=args.kd_chunk or None,
                                 num_items_in_batch=batch.stats["kd"])
    return backward_and_step(loss, optimizer, timer)


def fused_train_step(batch: Batch, student, teacher, step_module, optimizer, args, timer: PhaseTimer):
    """The step with ``trainers.losses.fused_distillation_loss``: the heads run inside the loss, chunk by chunk."""
    losses = load_losses()
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    autocast = torch.autocast(device_type, dtype=torch.bfloat16)
    states, states_mask = encoder_states(batch, student, args, timer, autocast)
    s = batch.student
    with timer.phase("teacher"), torch.no_grad(), autocast:
        t_hidden = teacher_logits(teacher, batch.teacher["input_ids"], batch.teacher["kd_index"],
                                  batch.teacher.get("attention_mask"), batch.teacher.get("position_ids"),
                                  hidden_only=True)

    def kd(hidden, weight):
        return losses.fused_distillation_loss(hidden, weight, t_hidden, teacher.lm_head.weight,
                                              chunk_size=args.kd_chunk or None, num_items_in_batch=batch.stats["kd"])

    with timer.phase("student_fwd+loss"), autocast:
        loss = step_module(s["input_ids"], states, states_mask, s["kd_index"], s.get("attention_mask"),
                           s.get("position_ids"), kd=kd)
    return backward_and_step(loss, optimizer, timer)


def backward_and_step(loss, optimizer, timer: PhaseTimer) -> float:
    with timer.phase("backward"):
        loss.backward()
    with timer.phase("optimizer"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def encoder_states(batch: Batch, student, args, timer: PhaseTimer, autocast):
    with timer.phase("encoder"), torch.no_grad(), autocast:
        if not batch.audio:
            return None, None
        if args.precomputed_features:
            return batch.audio["states"], batch.audio["mask"]
        return student.encode_audio(batch.audio["features"], batch.audio["features_mask"])


def step_flops(batch: Batch, student, llm_shape, adapter_shape, args) -> dict[str, float]:
    stats = batch.stats
    out = {
        "student": F.decoder_flops(llm_shape, stats["student_docs"], F.TRAIN, lm_head_tokens=stats["kd"])["total"],
        "adapter": F.decoder_flops(adapter_shape, stats["clip_frames"], F.TRAIN)["total"],
        "teacher": F.decoder_flops(llm_shape, stats["teacher_docs"], F.FORWARD, lm_head_tokens=stats["kd"])["total"],
        "encoder": 0.0,
    }
    if batch.audio and not args.precomputed_features:
        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16):
            out["encoder"] = float(F.measure_forward_flops(student.encode_audio, batch.audio["features"],
                                                           batch.audio["features_mask"]))
    out["total"] = sum(out.values())
    return out


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"


def describe(args) -> str:
    parts = [f"{args.encoder}", f"seq {args.seq_len}x{args.batch}", args.attn, f"params {args.param_dtype}"]
    ckpt = "grad-ckpt" + (f"/{args.grad_ckpt_every}" if args.grad_ckpt_every > 1 else "")
    parts += [flag for flag, on in ((ckpt, args.grad_ckpt), ("compile", args.compile), ("packing", args.packing),
                                    ("precomputed", args.precomputed_features), ("fsdp", args.fsdp),
                                    ("cpu-offload", args.fsdp_cpu_offload)) if on]
    parts.append(f"kd {args.kd_impl}, chunk {args.kd_chunk or 'off'}")
    parts.append(args.optim)
    return ", ".join(parts)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores)"


def peak_flops_for(args, device: torch.device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for key, value in F.PEAK_BF16_FLOPS.items():
            if key in name:
                return value
    return None


def run(args) -> str:
    device = torch.device(args.device)
    student, teacher, step_module, optimizer, llm_shape, adapter_shape = setup(args)
    rng, generator = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    batches = [make_batch(documents_for_rows(rng, args), args, student.config, device, generator)
               for _ in range(min(args.steps + args.warmup, args.distinct_batches))]
    batch_flops = [step_flops(b, student, llm_shape, adapter_shape, args) for b in batches]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup):
        train_step(batches[i % len(batches)], student, teacher, step_module, optimizer, args, PhaseTimer(device))
    timer, tokens, total_flops, losses = PhaseTimer(device), 0, 0.0, []
    timer.sync()
    start = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        index = i % len(batches)
        losses.append(train_step(batches[index], student, teacher, step_module, optimizer, args, timer))
        tokens += batches[index].stats["tokens"]
        total_flops += batch_flops[index]["total"]
    timer.sync()
    elapsed = time.perf_counter() - start
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"non-finite loss: {losses}")
    peak = peak_flops_for(args, device)
    utilization = f"MFU {100 * F.mfu(total_flops, elapsed, peak):.1f} %" if peak else "MFU n/a (CPU)"
    split = ", ".join(f"{k} {1000 * v / args.steps:.1f} ms" for k, v in timer.times.items())
    parts = ", ".join(f"{k} {F.human(v)}" for k, v in batch_flops[0].items())
    print(f"# step: {1000 * elapsed / args.steps:.1f} ms ({split}); loss {losses[-1]:.4f}", file=sys.stderr)
    print(f"# FLOPs of batch 0: {parts}; tokens/step {batches[0].stats['tokens']}, kd {batches[0].stats['kd']}, "
          f"clips {len(batches[0].stats['clip_frames'])}", file=sys.stderr)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + args.argv)
    return (f"| {device_name(device)} | {args.model} | {describe(args)} | {tokens / elapsed:,.0f} | {utilization} | "
            f"{peak_memory(device)} | `{command}` |")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODEL_CHOICES, default="tiny", help="LLM shape (3b/7b: Qwen2.5 dims)")
    parser.add_argument("--encoder", choices=("mimi", "whisper"), default="mimi", help="frozen speech encoder shape")
    parser.add_argument("--seq-len", type=int, default=2048, help="context length (student positions per row)")
    parser.add_argument("--batch", type=int, default=1, help="rows per step (micro-batch)")
    parser.add_argument("--attn", choices=("sdpa", "flash_attention_2", "eager"), default="sdpa")
    parser.add_argument("--grad-ckpt", action="store_true", help="activation checkpointing (LLM + adapter)")
    parser.add_argument("--grad-ckpt-every", type=int, default=1,
                        help="with --grad-ckpt: checkpoint every n-th layer only (more memory, less recompute)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each decoder layer (regional)")
    parser.add_argument("--packing", action="store_true",
                        help="padding-free: several documents per row, position_ids reset per document")
    parser.add_argument("--kd-chunk", type=int, default=128, help="rows per KD chunk (0: unchunked)")
    parser.add_argument("--kd-impl", choices=("fused", "materialized"), default="fused",
                        help="fused: the LM heads inside the loss, chunk by chunk; materialized: logits, then the loss")
    parser.add_argument("--precomputed-features", action="store_true", help="feed frozen-encoder states directly")
    parser.add_argument("--optim", choices=("adamw", "adamw_8bit"), default="adamw")
    parser.add_argument("--param-dtype", choices=("fp32", "bf16"), default="fp32",
                        help="student weights: fp32 master + bf16 autocast, or pure bf16")
    parser.add_argument("--fsdp", action="store_true", help="1-process FSDP2 (torch.distributed fully_shard)")
    parser.add_argument("--fsdp-cpu-offload", action="store_true", help="with --fsdp: CPUOffloadPolicy")
    parser.add_argument("--steps", type=int, default=5, help="measured steps")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first (compile, allocator)")
    parser.add_argument("--distinct-batches", type=int, default=2, help="distinct random batches cycled")
    parser.add_argument("--adapter-lr", type=float, default=1e-3)
    parser.add_argument("--llm-lr", type=float, default=5e-5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="MFU denominator (default: H100/H200 989)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    args.argv = raw
    if (args.seq_len < 64 or args.batch < 1 or args.steps < 1 or args.warmup < 0 or args.kd_chunk < 0
            or args.grad_ckpt_every < 1 or args.distinct_batches < 1):
        parser.error("need --seq-len >= 64, --batch >= 1, --steps >= 1, --warmup >= 0, --kd-chunk >= 0, "
                     "--grad-ckpt-every >= 1, --distinct-batches >= 1")
    if args.compile and args.warmup < args.distinct_batches:
        print(f"# --compile: warmup raised to {args.distinct_batches} so every batch shape compiles before timing",
              file=sys.stderr)
        args.warmup = args.distinct_batches
    if args.fsdp_cpu_offload and not args.fsdp:
        parser.error("--fsdp-cpu-offload needs --fsdp")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        line = run(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    print(line)


if __name__ == "__main__":
    main()
