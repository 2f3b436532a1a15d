"""The study's table as a picture (``leaderboard --plot``): grouped bars with 95% error bars, per-client strips."""

from __future__ import annotations

from pathlib import Path

from fedbench.harness.results.model import Matrix, client_views
from fedbench.harness.study_table import BASE_ROW


def plot(m: Matrix, path: Path) -> None:
    """Grouped bars with 95% error bars, one panel per benchmark: aggregators on x, a bar per variant, Base as a
    dashed line; below them, where scores are per client, one strip of client scores per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aggs = [r for r in m.rows if r != BASE_ROW]
    views = client_views(m)
    panels = max(1, len(m.benchmarks))
    fig, axes = plt.subplots(2 if views else 1, panels, figsize=(5 * panels, 8 if views else 4), squeeze=False)
    width = 0.8 / max(1, len(m.variants))
    for ax, bench in zip(axes[0], m.benchmarks):
        for k, var in enumerate(m.variants):
            shown = [
                (i, e, s) for i, a in enumerate(aggs) if (e := m.entry(a, bench, var)) is not None and (s := e.score) is not None
            ]
            xs = [i + k * width for i, _, _ in shown]
            ys = [s for _, _, s in shown]
            err = [
                [s - e.ci_low if e.ci_low is not None else 0 for _, e, s in shown],
                [e.ci_high - s if e.ci_high is not None else 0 for _, e, s in shown],
            ]
            ax.bar(xs, ys, width, yerr=err, capsize=3, label=var)
        base = m.value(BASE_ROW, bench, "")
        if base is not None:
            ax.axhline(base, color="black", linestyle="--", linewidth=1, label="Base")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(aggs))], aggs, rotation=30)
        ax.set_title(bench)
        ax.set_ylim(0, next(e.scale for (_, b, _), e in m.cells.items() if b == bench))
        ax.legend(fontsize=8)
    if views:
        for ax, bench in zip(axes[1], m.benchmarks):
            mine = [v for v in views if v.benchmark == bench]
            for i, v in enumerate(mine):
                values = list(v.scores.values())
                ax.scatter([i] * len(values), values, s=12, alpha=0.6)
                ax.boxplot([values], positions=[i], widths=0.5, showfliers=False)
            ax.set_xticks(range(len(mine)), [v.cell for v in mine], rotation=30)
            ax.set_title(f"{bench}: per client" if mine else "")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
