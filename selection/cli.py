"""`salad-select`: Stage II active selection (paper §3.3) from a YAML config.

    salad-select --config select.yaml --checkpoint runs/stage1 [--gamma 0 --output_dir runs/uniform ...]

Steps (`selection.steps`, each timed in report/report.json): text pool -> sentence embeddings -> balanced k-means
(K clusters) -> per-cluster probe documents synthesized with TTS (+ CER with Whisper) -> M(c) with the SALAD
checkpoint (`trainers.diagnostics.MisalignmentProbe`) -> drop clusters whose probe CER > max_cer -> target
P(c) ∝ P_pool(c)·M(c)^γ -> sample texts uniformly within clusters up to the budget -> synthesize them as span
documents with salad-synth's writer -> report. Output folder: `dataset/` (Hub-ready span dataset with card; rows
carry cluster, misalignment, gamma, round, seed, domain), `report/` (report.md, clusters.png, report.json) and
`cache/` (every step's output, keyed by its settings). Re-running resumes at the first step not in the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

from .config import SelectConfig, load_config
from .steps import run_selection

__all__ = ["build_parser", "main"]


def _coerce(value: str):
    return yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad-select", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (keys = SelectConfig fields)")
    for f in dataclasses.fields(SelectConfig):
        parser.add_argument(f"--{f.name}", dest=f.name, type=_coerce, default=argparse.SUPPRESS,
                            help=f.metadata.get("help", ""))
    parser.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true",
                        default=argparse.SUPPRESS, help="same as --trust_remote_code true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _summary(cfg: SelectConfig, report: dict) -> str:
    top = sorted((c for c in report["clusters"] if c["misalignment"] is not None),
                 key=lambda c: -c["misalignment"])[:3]
    return (f"salad-select: {report['selected_texts']} texts from {report['pool_size']} "
            f"({len(report['clusters'])} clusters, {len(report['dropped_for_cer'])} dropped for CER) -> "
            f"{Path(cfg.output_dir) / 'dataset'}; report: {Path(cfg.output_dir) / 'report' / 'report.md'}; "
            "most misaligned clusters: " + ", ".join(f"{c['cluster']} (M={c['misalignment']:.3f})" for c in top))


def main(argv=None) -> int:
    args = vars(build_parser().parse_args(argv))
    config_path, quiet = args.pop("config", None), args.pop("quiet")
    try:
        cfg = load_config(config_path, args)
        report = run_selection(cfg, progress=not quiet)
    except (ValueError, FileNotFoundError) as err:
        print(f"salad-select: error: {err}", file=sys.stderr)
        return 2
    print(_summary(cfg, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
