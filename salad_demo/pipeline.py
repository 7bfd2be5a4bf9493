"""`salad-demo`: the whole SALAD method end to end on real small pretrained parts, one command.

    salad-demo --preset smoke|default|long [--output DIR] [--stages a,b,...] [--force STAGE] [--set FIELD=VALUE]
               [--jobs auto|N]

Stages (each cached in OUT/stages/<name>.json by `StageRunner`; a second run reuses every finished stage, a killed
run resumes at the first unfinished one; `--force STAGE` redoes STAGE and everything after it). With `--jobs 2`
(the default on a CPU machine with 2+ cores) a stage starts in a child process as soon as the stages it reads
(`STAGE_NEEDS`) are done, two at a time on one thread each (an evaluation beside Stage I training); a stage that
runs alone gets every core. Each child's output is OUT/logs/<stage>.log.

  assets          SmolLM2-135M-Instruct + Whisper tiny.en prepared from installed packages
  salad_init      build_salad with the preset's recipe -> OUT/salad-init (untrained adapter)
  first_look      a fresh process loads salad-init with AutoModel(trust_remote_code) and answers a recorded clip
  eval_sets       packaged MC tasks the base LLM answers above chance, spoken by a seen and an unseen voice
  stage1_data     narrow narrative domain -> span documents synthesized with the training voices + text replay
  features        frozen-encoder states of every eval clip, once, into OUT/cache (a training run encodes the
                  clips its own steps hear)
  eval_init       salad-init vs the base LLM: text, speech, cascade; seen and unseen voice
  eval_reference  the naive reference: an untrained adapter on encoder frames (RECIPE_MLP), same eval sets
  stage1          cross-modal distillation (what trains: preset.trainable; WSD; checkpoint-pre-decay kept) + eval_stage1
  select_active / select_uniform   Stage II selection on the broad pool, gamma 5 vs 0, same budget
  stage2_active / stage2_uniform   from Stage I's pre-decay (or, stage2_start=final, last) checkpoint on
                                   narrow + selected + replay (thirds)
                                   + eval_stage2_active / eval_stage2_uniform
  export          best Stage II model -> OUT/salad-demo, active dataset -> OUT/salad-synth-demo
  report          OUT/REPORT.md, OUT/results.json, OUT/plots/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

from spans import atomic_write_text, staging_dir

from datasets_scripts.packaged_tasks import task_file_stem

from .demo_data import eval_items, narrative_documents, numeric_documents, pool_exclusions, read_jsonl, write_jsonl
from .presets import NARRATIVE_TASKS, PRESETS, RECIPE_NOTES, get_preset, parse_overrides

from .stages import ParallelStages, StageRunner

STAGES = ("assets", "salad_init", "first_look", "eval_sets", "stage1_data", "features", "eval_init", "eval_reference",
          "stage1",
          "eval_stage1", "select_active", "select_uniform", "stage2_active", "stage2_uniform", "eval_stage2_active",
          "eval_stage2_uniform", "export", "report")
# the stages whose results (or caches) each stage reads: `--jobs 2` runs a stage once these are done. Every
# evaluation follows eval_init, which scores the base LLM's text and cascade answers they all reuse from the score
# store; select_uniform reuses select_active's clusters and M(c).
STAGE_NEEDS = {
    "salad_init": ("assets",), "first_look": ("salad_init",), "eval_sets": ("assets",), "stage1_data": ("assets",),
    "features": ("salad_init", "eval_sets"), "eval_init": ("features",),
    "eval_reference": ("eval_init",), "stage1": ("salad_init", "stage1_data"), "eval_stage1": ("stage1", "eval_init"),
    "select_active": ("stage1",), "select_uniform": ("select_active",), "stage2_active": ("select_active",),
    "stage2_uniform": ("select_uniform",), "eval_stage2_active": ("stage2_active", "eval_init"),
    "eval_stage2_uniform": ("stage2_uniform", "eval_init"),
    "export": ("select_active", "eval_stage2_active", "eval_stage2_uniform"),
    "report": tuple(s for s in STAGES if s != "report"),
}
# the order a free slot takes ready stages in: the longest chain (Stage I -> active selection -> Stage II) first
PRIORITY = ("assets", "salad_init", "stage1_data", "eval_sets", "features", "stage1", "select_active",
            "stage2_active", "select_uniform", "stage2_uniform", "eval_init", "first_look", "eval_stage1",
            "eval_stage2_active", "eval_stage2_uniform", "eval_reference", "export", "report")
assert sorted(PRIORITY) == sorted(STAGES) and set(STAGE_NEEDS) == set(STAGES) - {"assets"}
# what each stage writes (relative to OUT), removed when the stage is forced; caches keyed by content stay
STAGE_OUTPUTS = {
    "salad_init": ["salad-init"], "first_look": ["first_look.json"], "eval_sets": ["data/eval"],
    "stage1_data": ["data/stage1", "data/stage1_documents.jsonl", "data/replay.jsonl"],
    "eval_init": ["eval/salad-init"], "eval_reference": ["eval/reference-init", "reference-init"],
    "stage1": ["stage1"], "eval_stage1": ["eval/stage1"],
    "select_active": ["stage2/select-active", "stage2/cache"], "select_uniform": ["stage2/select-uniform"],
    "stage2_active": ["stage2-active"], "stage2_uniform": ["stage2-uniform"],
    "eval_stage2_active": ["eval/stage2-active"], "eval_stage2_uniform": ["eval/stage2-uniform"],
    "export": ["salad-demo", "salad-synth-demo"], "report": ["REPORT.md", "results.json", "plots"],
}
# every eval task any preset may use: excluded from the shared broad pool, so one pool serves all presets
EVAL_CANDIDATES = sorted({t for p in PRESETS.values() for t in p.eval_tasks})
SHARED_POOL_MAX_PER_DOMAIN = 80  # the shared pool's cap; each preset subsamples it
assert all(p.pool_max_per_domain <= SHARED_POOL_MAX_PER_DOMAIN for p in PRESETS.values())


def _log(message: str) -> None:
    print(f"[salad-demo] {message}", file=sys.stderr, flush=True)


class DemoPipeline:
    """One demo run: `preset` sizes, `output` folder; `run(stages)` runs (or reuses) the stages in order."""

    def __init__(self, preset, output: str | os.PathLike | None = None):
        self.preset = preset
        self.out = Path(output or preset.output_dir)
        self.runner = StageRunner(self.out, log=_log)
        self.cache = self.out / "cache"
        self.data = self.out / "data"
        self._evaluator = None
        self._run_config_check()

    # ------------------------------------------------------------------------------------------ bookkeeping
    def _run_config_check(self):
        """A run folder belongs to one preset configuration: refuse to mix stages of two."""
        path = self.out / "preset.json"
        wanted = json.loads(json.dumps(self.preset.to_dict()))
        if path.is_file():
            # a preset field added after the run started, at its default, changes nothing the run holds
            defaults = {f.name: f.default for f in dataclasses.fields(self.preset)
                        if f.default is not dataclasses.MISSING}
            stored = {**{k: v for k, v in wanted.items() if k in defaults and v == defaults[k]},
                      **json.loads(path.read_text())}
            if stored != wanted:
                diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
                raise ValueError(f"{self.out} holds a run with other settings ({', '.join(diff)}); use another "
                                 "--output or delete the folder")
        else:
            atomic_write_text(path, json.dumps(wanted, indent=2))

    def result(self, stage: str):
        if not self.runner.done(stage):
            raise ValueError(f"stage {stage!r} has not run yet in {self.out}; run it first (--stages {stage})")
        return self.runner.record(stage)["result"]

    def force(self, stage: str) -> None:
        """Forget `stage` and every later stage and delete their outputs (rebuilt on the next run)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        for name in STAGES[STAGES.index(stage):]:
            self.runner.record_path(name).unlink(missing_ok=True)
            for rel in STAGE_OUTPUTS.get(name, []):
                path = self.out / rel
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    def run(self, stages=None, jobs: int = 1) -> dict:
        """Run (or reuse) `stages` (default: all); `jobs` > 1 runs independent stages side by side in child
        processes (`ParallelStages`), 1 runs them in this process, in order."""
        selected = list(STAGES) if not stages else list(stages)
        unknown = [s for s in selected if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; stages: {', '.join(STAGES)}")
        total = time.perf_counter()
        if jobs > 1:
            ParallelStages(self.runner, STAGE_NEEDS, self.child_command, jobs).run(
                [s for s in PRIORITY if s in selected])
        else:
            for name in (s for s in STAGES if s in selected):
                _log(f"stage {STAGES.index(name) + 1}/{len(STAGES)}: {name}")
                self.runner.run(name, getattr(self, f"stage_{name}"))
        _log(f"done in {time.perf_counter() - total:.0f} s; report: {self.out / 'REPORT.md'}")
        return {name: self.runner.record(name)["result"] for name in STAGES if self.runner.done(name)}

    def child_command(self, stage: str, threads: int) -> list[str]:
        """The argv of a child process that runs `stage` of this run (same preset and overrides)."""
        default = json.loads(json.dumps(PRESETS[self.preset.name].to_dict()))
        mine = json.loads(json.dumps(self.preset.to_dict()))
        overrides = [f"{k}={json.dumps(v)}" for k, v in mine.items() if v != default.get(k)]
        return [sys.executable, "-m", "salad_demo.pipeline", "--preset", self.preset.name, "--output", str(self.out),
                "--stages", stage, "--threads", str(threads), "--jobs", "1",
                *(arg for item in overrides for arg in ("--set", item))]

    # ------------------------------------------------------------------------------------------ shared objects
    @property
    def assets(self) -> dict:
        return self.result("assets")

    @property
    def evaluator(self):
        if self._evaluator is None:
            from .demo_eval import DemoEvaluator

            self._evaluator = DemoEvaluator(self.assets, self.cache, self.preset)
        return self._evaluator

    def eval_benchmarks(self) -> dict[str, list[dict]]:
        return {task: read_jsonl(path) for task, path in self.result("eval_sets")["files"].items()}

    @property
    def encoder_cache_dir(self) -> Path:
        return self.cache / "encoder-states"

    @staticmethod
    def load_model(path):
        from modeling_salad.loading import UntrustedCodeError, load_salad

        # The demo's own folders hold the installed modeling_salad's code: the sha256 rule allows it, no flag.
        try:
            model, processor = load_salad(path)
        except UntrustedCodeError as error:
            raise UntrustedCodeError(f"{error}\nA demo folder saved before modeling_salad changed is rebuilt with "
                                     "`salad-demo --force salad_init` (later stages are redone; caches are kept).") \
                from None
        return model.eval(), processor

    def voice_pool(self):
        from datasets_scripts.tts import VoicePool

        p = self.preset
        return VoicePool(p.training_voices, speed_jitter=p.training_speed_jitter, pitch_jitter=p.training_pitch_jitter,
                         noise_snr_db=p.training_noise_snr_db, reverb_probability=p.training_reverb_probability,
                         seed=p.seed)

    # ------------------------------------------------------------------------------------------ stages
    def stage_assets(self) -> dict:
        from .assets import prepare_assets

        return {k: (str(v) if v is not None else None) for k, v in prepare_assets().items()}

    def build_init(self, recipe: dict, target: Path) -> dict:
        """An untrained SALAD model of `recipe` (build_salad keyword arguments) saved to `target`."""
        from modeling_salad import build_salad

        from .export import parameter_counts

        model, processor = build_salad(self.assets["llm"], self.assets["whisper"], **recipe)
        with staging_dir(target) as staging:
            model.save_pretrained(staging)
            processor.save_pretrained(staging)
        return {"path": str(target), "recipe": recipe, "parameters": parameter_counts(model),
                "trainable_adapter_parameters": sum(p.numel() for p in model.multi_modal_projector.parameters())}

    def stage_salad_init(self) -> dict:
        return self.build_init(self.preset.recipe, self.out / "salad-init")

    def stage_first_look(self) -> dict:
        from .first_look import run_first_look

        if not self.assets.get("real_speech"):
            raise ValueError("pocketsphinx-testdata is not installed (apt-get install pocketsphinx-testdata)")
        clip = sorted(Path(self.assets["real_speech"]).glob("*.wav"))[0]
        return run_first_look(self.out / "salad-init", clip, self.out / "first_look.json",
                              max_new_tokens=self.preset.first_look_max_new_tokens)

    def stage_eval_sets(self) -> dict:
        p = self.preset
        candidates = {}
        for task in p.eval_tasks:
            items = eval_items(task, p.eval_items_per_task, p.eval_max_question_words, seed=p.seed)
            if len(items) >= p.fewshot_pool_size + 3:
                candidates[task] = items
            else:
                _log(f"eval task {task}: only {len(items)} short items, skipped")
        screen = self.evaluator.screen_text(candidates)
        kept, decisions = {}, {}
        for i, (task, items) in enumerate(candidates.items()):
            row = screen[task]
            above = row["base_text_acc"] - row["chance_acc"]
            keep = i == 0 or above >= p.eval_screen_margin
            decisions[task] = {"base_text_acc": row["base_text_acc"], "chance_acc": row["chance_acc"],
                               "kept": keep, "n": row["n"]}
            if keep:
                kept[task] = items
        files = {task: str(write_jsonl(items, self.data / "eval" / f"{task_file_stem(task)}.jsonl"))
                 for task, items in kept.items()}
        clips = self.evaluator.synthesize(kept)
        return {"files": files, "screen": decisions, "clips": clips,
                "voices": {"seen": p.seen_voice, "unseen": p.unseen_voice}}

    def stage_stage1_data(self) -> dict:
        from datasets_scripts.synth_writer import SynthConfig, completed_summary, write_span_dataset

        p = self.preset
        speech_docs, replay_docs = narrative_documents(p.stage1_documents, p.replay_documents, p.document_words,
                                                       seed=p.seed)
        if p.stage1_numeric_documents:
            speech_docs += numeric_documents(read_jsonl(self.broad_pool()), p.stage1_numeric_documents,
                                             p.document_words, seed=p.seed, one_digit_only=p.stage1_numeric_one_digit)
        write_jsonl(speech_docs, self.data / "stage1_documents.jsonl")
        write_jsonl([{"id": d["id"], "text": d["text"], "source": d["source"]} for d in replay_docs],
                    self.data / "replay.jsonl")
        folder, voices = self.data / "stage1", self.voice_pool()
        config = SynthConfig(mode="spans", seed=p.seed, source="narrative", chunk_size=64, card_context={
            "description": "SALAD demo Stage I: narrow-domain narrative text (parables) as interleaved speech/text "
                           "span documents.",
            "sources": [{"name": f"OpenAI evals {t}", "license": "mit"} for t in NARRATIVE_TASKS]})
        summary = (completed_summary(speech_docs, folder, voices, config)
                   or write_span_dataset(speech_docs, folder, voices, config))
        return {"dataset": str(folder), "replay": str(self.data / "replay.jsonl"),
                "documents": len(speech_docs), "replay_documents": len(replay_docs),
                "sources": sorted({d["source"] for d in speech_docs}), "synthesis": summary}

    def _span_documents(self, folder):
        from trainers.data import load_speech_documents

        return load_speech_documents(str(folder), text_column="text", audio_column="audio", group_column="doc_id",
                                     order_column="span_index", utterances_per_document=None)

    def stage_features(self) -> dict:
        return self.precompute_features(self.out / "salad-init")

    def precompute_features(self, model_path: Path) -> dict:
        """Encoder states of every eval clip for the model at `model_path` (cached by its recipe). Training clips
        are encoded by each training run itself, only those its steps hear (`trainers.clip_states`)."""
        model, processor = self.load_model(model_path)
        start = time.perf_counter()
        eval_clips = self.evaluator.encode(model, processor, self.eval_benchmarks())
        return {"cache_dir": str(self.encoder_cache_dir), "eval_clips": eval_clips,
                "eval_seconds": round(time.perf_counter() - start, 1)}

    def _evaluate(self, checkpoint) -> dict:
        model, processor = self.load_model(checkpoint)
        out = {"checkpoint": str(checkpoint)}
        for role, result in self.evaluator.evaluate_voices(model, processor, self.eval_benchmarks()).items():
            predictions = result.pop("predictions")
            folder = self.out / "eval" / Path(checkpoint).name / role
            for task, records in predictions.items():
                write_jsonl(records, folder / "predictions" / f"{task}.jsonl")
            atomic_write_text(folder / "results.json", json.dumps(result, indent=2, default=str))
            out[role] = json.loads(json.dumps(result, default=str))
        return out

    def stage_eval_init(self) -> dict:
        return self._evaluate(self.out / "salad-init")

    def stage_eval_reference(self) -> dict:
        """The naive reference: an untrained adapter learned from scratch on encoder frames (RECIPE_MLP), whose
        gap is the one a from-scratch adapter starts from (and, on a CPU budget, stays at)."""
        from modeling_salad import build_salad

        from .presets import RECIPE_MLP

        target = self.out / "reference-init"
        if not (target / "config.json").is_file():
            model, processor = build_salad(self.assets["llm"], self.assets["whisper"], **RECIPE_MLP)
            with staging_dir(target) as staging:
                model.save_pretrained(staging)
                processor.save_pretrained(staging)
            del model
        return {**self._evaluate(target), "recipe": RECIPE_MLP}

    # ------------------------------------------------------------------------------------------ training
    def _train_args(self, output_dir: Path, decay_fraction: float, steps: int, trainable: str,
                    llm_learning_rate: float | None, adapter_learning_rate: float, **overrides):
        from trainers.config import DistillationConfig

        p = self.preset
        # the teacher follows `trainable` (the shared frozen LLM, or the LLM with LoRA off) unless the LLM itself
        # trains: then it is always the base text LLM, since Stage II starts from a checkpoint whose LLM has
        # trained and a frozen copy of *that* LLM would let the teacher drift from the text model the paper distils
        teacher = str(self.assets["llm"]) if trainable in ("adapter+llm", "llm") else None
        overrides.setdefault("adapter_parameter_learning_rates", p.adapter_parameter_learning_rates)
        overrides.setdefault("seed", p.seed)
        return DistillationConfig(
            output_dir=str(output_dir), trainable=trainable, teacher_model_name_or_path=teacher,
            text_replay_ratio=1 / 3, alpha=1.0, beta=0.0, learning_rate=llm_learning_rate or adapter_learning_rate,
            adapter_learning_rate=adapter_learning_rate, lr_scheduler_type="warmup_stable_decay",
            warmup_steps=p.warmup_steps, decay_fraction=decay_fraction, max_steps=steps,
            per_device_train_batch_size=p.batch_size, gradient_accumulation_steps=1, max_length=p.max_length,
            logging_steps=p.logging_steps, save_strategy="no", report_to="none",
            diagnostics_steps=p.diagnostics_steps, probe_size=p.probe_size, kd_chunk_size=256,
            dataloader_num_workers=0, bf16=False, weight_decay=0.0, disable_tqdm=False,
            # span datasets already alternate speech and text spans (text spans carry no audio): hear every clip
            speech_policy="all", **overrides)

    def _train(self, name: str, model_path, span_datasets: list[str], decay_fraction: float, steps: int,
               trainable: str | None = None, llm_learning_rate: float | None = None,
               adapter_learning_rate: float | None = None, **overrides) -> dict:
        """Train `model_path` on `span_datasets` + the replay set; `overrides` are further DistillationConfig
        fields (e.g. projector_lora_r)."""
        from trainers.config import DataArguments, ModelArguments
        from trainers.train import train

        p = self.preset
        output_dir = self.out / name
        args = self._train_args(output_dir, decay_fraction, steps, trainable or p.trainable,
                                llm_learning_rate or p.llm_learning_rate, adapter_learning_rate or p.learning_rate,
                                **overrides)
        data_args = DataArguments(span_datasets=[str(s) for s in span_datasets],
                                  replay_dataset=self.result("stage1_data")["replay"],
                                  feature_cache_dir=str(self.encoder_cache_dir))
        trainer = train(args, ModelArguments(model_name_or_path=str(model_path)), data_args)
        history = list(trainer.state.log_history)
        del trainer
        atomic_write_text(output_dir / "log_history.json", json.dumps(history, indent=1))
        losses = [h["kd_loss"] for h in history if "kd_loss" in h]
        pre_decay = output_dir / "checkpoint-pre-decay"
        teacher = args.teacher_model_name_or_path or args.teacher_mode
        return {"output_dir": str(output_dir), "steps": steps, "teacher": teacher,
                "pre_decay": str(pre_decay) if (pre_decay / "config.json").is_file() else None,
                "first_kd_loss": losses[0] if losses else None, "last_kd_loss": losses[-1] if losses else None,
                "log_history": str(output_dir / "log_history.json")}

    def stage_stage1(self) -> dict:
        p = self.preset
        return self._train("stage1", self.out / "salad-init", [self.result("stage1_data")["dataset"]],
                           p.decay_fraction, p.stage1_steps)

    def stage_eval_stage1(self) -> dict:
        return self._evaluate(self.result("stage1")["output_dir"])

    # ------------------------------------------------------------------------------------------ Stage II
    def broad_pool(self) -> Path:
        """The packaged broad pool (the evals wheel, eval and narrative tasks excluded), built once per machine
        into the corpora cache and subsampled per domain for this preset into OUT/data/pool.jsonl."""
        from spans import cache_root
        from datasets_scripts.corpora import evals_wheel
        from selection.text_pool import POOL_VERSION, PoolConfig, build_text_pool, load_pool, save_pool

        target = self.data / "pool.jsonl"
        if target.is_file():
            return target
        exclude = pool_exclusions(EVAL_CANDIDATES)
        evals = evals_wheel()
        if evals is None:
            raise FileNotFoundError("the Stage II pool needs the evals wheel (SALAD_EVALS_WHEEL is 'none')")
        sources = evals.name.split(".")[0]
        shared = cache_root() / "pools" / f"demo-pool-v{POOL_VERSION}-{sources}-{SHARED_POOL_MAX_PER_DOMAIN}-{len(exclude)}.jsonl"
        if not shared.is_file():
            rows = build_text_pool(PoolConfig(evals=str(evals), corpora=("evals",), exclude=tuple(exclude),
                                              max_per_domain=SHARED_POOL_MAX_PER_DOMAIN))
            save_pool(rows, shared)
        rows = load_pool(shared)
        by_domain: dict[str, list] = {}
        for row in rows:
            by_domain.setdefault(row["domain"], []).append(row)
        rng = random.Random(self.preset.seed)
        picked = []
        for domain in sorted(by_domain):
            members = by_domain[domain]
            picked += rng.sample(members, min(len(members), self.preset.pool_max_per_domain))
        return save_pool(picked, target)

    def _select(self, name: str, gamma: float) -> dict:
        from spans import cache_root
        from selection.config import SelectConfig
        from selection.steps import run_selection

        p = self.preset
        output = self.out / "stage2" / name
        # one step cache for both selections: they differ only in gamma, so they share pool, clusters and M(c)
        cfg = SelectConfig(output_dir=str(output), pool=str(self.broad_pool()), checkpoint=self.result("stage1")["output_dir"],
                           num_clusters=p.num_clusters, gamma=gamma, budget_texts=p.selection_budget_texts,
                           tts=p.training_voices, probe_size=p.selection_probe_size, max_cer=p.selection_max_cer,
                           cer_model=self.assets["whisper"], seed=self.stage2_seed,
                           cache_dir=str(self.out / "stage2" / "cache"),
                           embedding_cache_dir=str(cache_root() / "embeddings"))
        report = run_selection(cfg)
        return {"output_dir": str(output), "dataset": str(output / "dataset"), "gamma": gamma,
                "selected_texts": report["selected_texts"], "pool_size": report["pool_size"],
                "clusters": [{k: c[k] for k in ("cluster", "size", "misalignment", "cer", "dropped", "target_prob",
                                                "selected", "top_domains")} for c in report["clusters"]],
                "report": str(output / "report" / "report.json"), "synthesis": report.get("synthesis")}

    def stage_select_active(self) -> dict:
        return self._select("select-active", self.preset.gamma)

    def stage_select_uniform(self) -> dict:
        return self._select("select-uniform", 0.0)

    @property
    def stage2_seed(self) -> int:
        return self.preset.seed if self.preset.stage2_seed is None else self.preset.stage2_seed

    def stage2_start(self) -> tuple[str, int]:
        """(checkpoint Stage II starts from, Stage I's step there): `DemoPreset.stage2_start`."""
        stage1 = self.result("stage1")
        if self.preset.stage2_start == "pre_decay" and stage1["pre_decay"]:
            state = Path(stage1["pre_decay"]) / "trainer_state.json"
            return stage1["pre_decay"], json.loads(state.read_text())["global_step"]
        return stage1["output_dir"], stage1["steps"]

    def _stage2(self, kind: str) -> dict:
        start, start_step = self.stage2_start()
        result = self._train(f"stage2-{kind}", start, [self.result("stage1_data")["dataset"],
                                                        self.result(f"select_{kind}")["dataset"]],
                             1.0, self.preset.stage2_steps, seed=self.stage2_seed)
        return {**result, "start": start, "start_step": start_step, "seed": self.stage2_seed}

    def stage_stage2_active(self) -> dict:
        return self._stage2("active")

    def stage_stage2_uniform(self) -> dict:
        return self._stage2("uniform")

    def stage_eval_stage2_active(self) -> dict:
        return self._evaluate(self.result("stage2_active")["output_dir"])

    def stage_eval_stage2_uniform(self) -> dict:
        return self._evaluate(self.result("stage2_uniform")["output_dir"])

    # ------------------------------------------------------------------------------------------ export, report
    def stage_export(self) -> dict:
        from .export import DEFAULT_TRAINING, export_model
        from .presets import TRAINABLE_NOTES

        def score(kind):
            ev = self.result(f"eval_stage2_{kind}")
            return sum(ev[role]["average"].get("speech_acc", 0.0) for role in ("seen", "unseen"))

        best = max(("active", "uniform"), key=score)
        ev = self.result(f"eval_stage2_{best}")
        model_dir = export_model(
            self.result(f"stage2_{best}")["output_dir"], self.out / "salad-demo", repo_id="org/salad-demo",
            results=ev["unseen"], datasets=["org/salad-synth-demo"], overwrite=True,
            training=f"{DEFAULT_TRAINING} What trained (`trainable={self.preset.trainable}`): "
                     f"{TRAINABLE_NOTES.get(self.preset.trainable, '')}",
            limitations=["A 135M-parameter demo trained for minutes on CPU; the evaluation table uses the unseen "
                         f"voice ({self.preset.unseen_voice}) on a few packaged MC tasks.",
                         RECIPE_NOTES.get(self.preset.recipe.get("adapter_type", "mlp"), "")])
        dataset_src = Path(self.result("select_active")["dataset"])
        dataset_dir = self.out / "salad-synth-demo"
        with staging_dir(dataset_dir) as staging:
            shutil.copytree(dataset_src, staging, ignore=shutil.ignore_patterns(".salad-synth"), dirs_exist_ok=True)
        return {"best_stage2": best, "model": str(model_dir), "dataset": str(dataset_dir),
                "publish": [f"salad-publish {model_dir} ORG/salad-demo --repo-type model",
                            f"salad-publish {dataset_dir} ORG/salad-synth-demo --repo-type dataset"]}

    def stage_report(self) -> dict:
        from .report import collect_results, write_report

        results = collect_results(self)
        paths = write_report(results, self.out)
        return {k: str(v) for k, v in paths.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-demo", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[4:]))
    parser.add_argument("--preset", default="default", help=f"sizes of the run: {', '.join(PRESETS)}")
    parser.add_argument("--output", help="run folder (default: the preset's, e.g. runs/demo)")
    parser.add_argument("--stages", help="comma-separated stages to run (default: all); earlier stages must be done")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help="redo STAGE and every stage after it (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one preset field (JSON value, e.g. --set stage1_steps=120 --set "
                             "trainable='\"llm\"'); the run folder records it (repeatable)")
    parser.add_argument("--threads", default="auto",
                        help="torch CPU threads; 'auto' = 1 when the machine is oversubscribed (load average above "
                             "the core count: spinning OpenMP threads then cost more than they give), else torch's "
                             "default")
    parser.add_argument("--jobs", default="auto",
                        help="stages run side by side in child processes (logs in OUT/logs/); 'auto' = 2 on a CPU "
                             "machine with 2+ cores (two stages on one thread each do more than one on both), else 1")
    return parser


def resolve_jobs(jobs: str) -> int:
    import torch

    if jobs == "auto":
        return 2 if (os.cpu_count() or 1) >= 2 and not torch.cuda.is_available() else 1
    if not jobs.isdigit() or int(jobs) < 1:
        raise ValueError(f"--jobs must be 'auto' or a positive integer, got {jobs!r}")
    return int(jobs)


def set_threads(threads: str) -> int:
    import torch

    if threads == "auto":
        if os.getloadavg()[0] > (os.cpu_count() or 1):
            torch.set_num_threads(1)
    else:
        try:
            count = int(threads)
        except ValueError:
            raise ValueError(f"--threads must be 'auto' or a positive integer, got {threads!r}") from None
        if count < 1:
            raise ValueError(f"--threads must be >= 1, got {count}")
        torch.set_num_threads(count)
    return torch.get_num_threads()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    preset = get_preset(args.preset, parse_overrides(args.set))
    output = Path(args.output or preset.output_dir)
    if preset.name == "smoke" and output.resolve() == Path(PRESETS["default"].output_dir).resolve():
        raise ValueError("the smoke preset never writes into the default demo folder")
    import torch

    pipeline = DemoPipeline(preset, output)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    threads_before = torch.get_num_threads()
    try:
        _log(f"preset {preset.name} -> {output} (torch threads: {set_threads(args.threads)})")
        for stage in args.force:
            pipeline.force(stage)
        pipeline.run(stages, jobs=resolve_jobs(args.jobs))
    finally:
        torch.set_num_threads(threads_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
