"""The selection report: report.json, report.md and clusters.png (P_pool, M and the target per cluster)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from spans.files import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["plot_clusters", "write_report"]


def plot_clusters(report: dict, path: Path) -> Path:
    """Three bar panels per cluster: P_pool(c), M(c), target P(c) (dropped clusters hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clusters = report["clusters"]
    x = np.arange(len(clusters))
    fig, axes = plt.subplots(3, 1, figsize=(max(6, 0.45 * len(x) + 2), 7), sharex=True)
    panels = (("pool_prob", "P_pool(c)"), ("misalignment", "M(c)"),
              ("target_prob", f"target (γ={report['config']['gamma']:g})"))
    for ax, (key, title) in zip(axes, panels):
        values = [c[key] if c[key] is not None else 0.0 for c in clusters]
        bars = ax.bar(x, values, color="tab:blue" if key != "misalignment" else "tab:red")
        for bar, c in zip(bars, clusters):
            if c["dropped"]:
                bar.set_hatch("//")
                bar.set_facecolor("lightgray")
        ax.set_ylabel(title)
    axes[-1].set_xticks(x, [str(c["cluster"]) for c in clusters])
    axes[-1].set_xlabel("cluster (hatched: dropped for CER)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _summary_lines(report: dict) -> list[str]:
    cfg = report["config"]
    lines = [f"# Active selection report (round {cfg['round']}, γ = {cfg['gamma']:g}, seed {cfg['seed']})", "",
             f"* checkpoint: `{cfg['checkpoint']}`", f"* pool: {report['pool_size']} texts, "
             f"{report['pool_domains']} domains; embeddings: `{report['embedding_model']}`; "
             f"K = {len(report['clusters'])}",
             f"* selected: {report['selected_texts']} texts; dropped for CER > {cfg['max_cer']}: "
             f"{report['dropped_for_cer'] or 'none'}; unscored: {report['unscored'] or 'none'}",
             f"* measured speech rate: {report['seconds_per_word'] and round(report['seconds_per_word'], 3)} s of "
             "audio per document word", f"* timings (s): {report['timings_seconds']}"]
    if report.get("synthesis"):
        lines.append(f"* synthesized: {report['synthesis']['rows']} span rows, "
                     f"{report['synthesis']['audio_hours']:.4f} h of audio; skipped: {report['synthesis']['skipped']}")
    return lines


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _cluster_lines(report: dict) -> list[str]:
    ranked = sorted((c for c in report["clusters"] if c["misalignment"] is not None),
                    key=lambda c: -c["misalignment"])
    lines = ["", "![clusters](clusters.png)", "", "## Most misaligned clusters", ""]
    lines += [f"{rank + 1}. cluster {c['cluster']}: M = {c['misalignment']:.4f} "
              f"({', '.join(d for d, _ in c['top_domains'])})" for rank, c in enumerate(ranked[:5])]
    lines += ["", "## Clusters", "",
              "| cluster | size | P_pool | M(c) | CER | dropped | target | selected | top domains |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in report["clusters"]:
        domains = "; ".join(f"{d} ({n})" for d, n in c["top_domains"])
        lines.append(f"| {c['cluster']} | {c['size']} | {c['pool_prob']:.3f} | {_fmt(c['misalignment'])} | "
                     f"{_fmt(c['cer'])} | {'yes' if c['dropped'] else ''} | {c['target_prob']:.3f} | "
                     f"{c['selected']} | {domains} |")
    lines += ["", "## Example texts per cluster", ""]
    for c in report["clusters"]:
        lines.append(f"**Cluster {c['cluster']}**" + (" (dropped)" if c["dropped"] else ""))
        lines += [f"* {t}" for t in c["examples"]] + [""]
    return lines


def write_report(report: dict, report_dir: Path) -> Path:
    """report.md + clusters.png + report.json in ``report_dir``; returns the path of report.md."""
    report_dir = Path(report_dir)
    atomic_write_json(report_dir / "report.json", report)
    plot_clusters(report, report_dir / "clusters.png")
    return atomic_write_text(report_dir / "report.md", "\n".join(_summary_lines(report) + _cluster_lines(report)) + "\n")
