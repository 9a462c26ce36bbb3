"""The controlled-sentiment experiment's report: ``results.md`` (every judged policy) and ``frontier.png``
(oracle reward against KL, one curve per method)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .config import Config
from .methods import LOSS_NAMES, curve_label


def report(cfg: Config, data: dict) -> None:
    """``results.md`` (the table) and ``frontier.png`` (oracle reward against KL, one curve per method; a
    configured method's rows, its rounds' too, labelled as ``curve_label`` names it now)."""
    labels = {m.name: curve_label(cfg.methods, m) for m in cfg.methods}

    def label(name: str, row: dict) -> str:
        method = labels.get(re.sub(r"_(round|step)\d+$", "", name), row["method"])
        return LOSS_NAMES.get(method, method)

    rows = {k: {**v, "method": label(k, v)} for k, v in data.items() if isinstance(v, dict) and "kl" in v}
    Path(cfg.workdir, "results.md").write_text(frontier_table(rows) + "\n" + at_kl_table(rows))
    plot_frontier(rows, Path(cfg.workdir, "frontier.png"), title="SST-2 controlled sentiment: reward vs KL")


def frontier_table(rows: dict[str, dict]) -> str:
    """A markdown table of policies: name, method, beta or N, each judge's reward, KL, seconds."""
    judges = sorted({k for r in rows.values() for k in r if k.startswith("reward/")})
    lines = ["| policy | method | beta / N | " + " | ".join(j.removeprefix("reward/") for j in judges)
             + " | KL (nats) | seconds |", "|---" * (len(judges) + 5) + "|"]
    for name, r in rows.items():
        rewards = " | ".join(f"{r[j]:.3f}" if j in r else "-" for j in judges)
        lines.append(f"| {name} | {r['method']} | {r['param']} | {rewards} | {r['kl']:.2f} | {r.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


def rewards_at(rows: dict[str, dict], kls=(2.0, 5.0, 10.0), *, judge: str = "reward/oracle",
               start: str = "sft") -> dict[str, dict]:
    """Each method's reward at each KL of ``kls``, read from its curve: the best reward its policies reach
    within that KL, linear between the points of its front (the measured points, and the ``start`` policy,
    SFT at 0 nats, that no point of lower KL beats), flat past the front's last point up to the method's
    largest measured KL, None beyond it (not reached). An online or iterative run's points, one per judged
    step, are read the same way. Also each method's largest KL and number of points (the start's included)."""
    origin = rows.get(start)
    out = {}
    for method in sorted({r["method"] for r in rows.values()} - ({origin["method"]} if origin else set())):
        points = sorted((r["kl"], r[judge]) for r in rows.values() if r["method"] == method and judge in r)
        if origin is not None:
            points = [(0.0, origin[judge]), *points]
        front = [points[0]]
        for kl, reward in points[1:]:
            if reward > front[-1][1]:
                front.append((kl, reward))
        fkl, freward = zip(*front)
        out[method] = {**{k: (None if k > points[-1][0] else float(np.interp(k, fkl, freward))) for k in kls},
                       "max_kl": points[-1][0], "points": len(points)}
    return out


def at_kl_table(rows: dict[str, dict], kls=(2.0, 5.0, 10.0)) -> str:
    """A markdown table of :func:`rewards_at`: one row a method, ``-`` where its curve does not reach."""
    read = rewards_at(rows, kls)
    head = " | ".join(f"oracle at {k:g} nats" for k in kls)
    lines = [f"| method | {head} | largest KL | points |", "|---" * (len(kls) + 3) + "|"]
    for method, r in read.items():
        cells = " | ".join("-" if r[k] is None else f"{r[k]:.3f}" for k in kls)
        lines.append(f"| {method} | {cells} | {r['max_kl']:.2f} | {r['points']} |")
    return "\n".join(lines) + "\n"


def plot_frontier(rows: dict[str, dict], png: str | Path, *, judge: str = "reward/oracle", title: str = "",
                  zoom: float = 10.0) -> Path:
    """Reward (``judge``) against KL per sequence, one curve per method (its points sorted by KL; colour and
    marker together tell up to 60 methods apart); left all of it, right KL <= ``zoom`` nats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for i, method in enumerate(sorted({r["method"] for r in rows.values()})):
        points = sorted((r["kl"], r[judge]) for r in rows.values() if r["method"] == method)
        for ax in axes:
            ax.plot(*zip(*points), marker="osD^vP"[i // 10 % 6], color=plt.cm.tab10(i % 10), label=method)
    axes[1].set_xlim(-0.2, zoom)
    for ax, name in zip(axes, (title, f"KL <= {zoom:g} nats")):
        ax.set_xlabel("KL(pi || pi_ref) per sequence (nats)")
        ax.set_ylabel(f"mean {judge.removeprefix('reward/')} reward")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return Path(png)
