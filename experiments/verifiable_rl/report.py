"""The verifiable-reward experiment's report: ``results.md`` (each method's held-out exact match, its gain over
SFT, the KL it reached, when it first gained ``target`` points) and ``curves.png`` (exact match against sampled
completions and against training wall time, +-1 standard error)."""

from __future__ import annotations

import math
from pathlib import Path


def gain(row: dict, sft: dict) -> tuple[float, float]:
    """(points of exact match over SFT, its standard error): independent errors (conservative: the two are
    measured on the same problems, whose paired error is smaller)."""
    return 100 * (row["exact_match"] - sft["exact_match"]), 100 * math.hypot(row["exact_match_sem"],
                                                                              sft["exact_match_sem"])


def first_reaching(curve: list[dict], sft: dict, points: float) -> dict | None:
    """The first point of ``curve`` whose gain over SFT is at least ``points`` and beyond 3 standard errors."""
    for point in curve:
        g, se = gain(point, sft)
        if g >= points and g > 3 * se:
            return point
    return None


def table(data: dict, target: float = 20.0) -> str:
    sft = data["sft"]
    lines = ["| method | held-out exact match | gain over SFT (points) | sampled exact match | KL from SFT (nats) | "
             f"first +{target:g} points at | completions | train seconds |", "|---" * 8 + "|",
             f"| SFT ({sft['demonstrations']} demonstrations) | {sft['exact_match']:.3f} +- "
             f"{sft['exact_match_sem']:.3f} | - | {sft['sampled_exact_match']:.3f} | 0 | - | 0 | "
             f"{sft['train_seconds']:.0f} |"]
    for row in (v for v in data.values() if isinstance(v, dict) and "curve" in v):
        g, se = gain(row, sft)
        hit = first_reaching(row["curve"], sft, target)
        when = f"{hit['completions']:,} completions, {hit['train_seconds']:.0f} s" if hit else "not reached"
        lines.append(f"| {row['method']} | {row['exact_match']:.3f} +- {row['exact_match_sem']:.3f} | "
                     f"{g:+.1f} +- {se:.1f} | {row['sampled_exact_match']:.3f} | {row['kl']:.2f} +- "
                     f"{row['kl_sem']:.2f} | {when} | {row['completions']:,} | {row['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot_curves(data: dict, png: str | Path, *, title: str = "", target: float = 20.0) -> Path:
    """Held-out exact match against sampled completions (left) and training seconds (right), one curve per
    method with a +-1 s.e. band; SFT and SFT + ``target`` points as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sft = data["sft"]["exact_match"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, row in enumerate(v for v in data.values() if isinstance(v, dict) and "curve" in v):
        for ax, x in zip(axes, ("completions", "train_seconds")):
            xs = [p[x] for p in row["curve"]]
            ys = [p["exact_match"] for p in row["curve"]]
            se = [p["exact_match_sem"] for p in row["curve"]]
            colour = plt.cm.tab10(i % 10)
            ax.plot(xs, ys, marker="o", markersize=3, color=colour, label=row["method"])
            ax.fill_between(xs, [y - e for y, e in zip(ys, se)], [y + e for y, e in zip(ys, se)], color=colour,
                            alpha=0.2)
    for ax, xlabel in zip(axes, ("sampled completions", "training wall time (s)")):
        ax.axhline(sft, color="gray", linestyle=":", label="SFT")
        ax.axhline(sft + target / 100, color="gray", linestyle="--", label=f"SFT + {target:g} points")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out exact match (greedy)")
    axes[0].set_title(title)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return Path(png)


def report(workdir: str | Path, data: dict, *, title: str) -> None:
    Path(workdir, "results.md").write_text(table(data))
    plot_curves(data, Path(workdir, "curves.png"), title=title)
