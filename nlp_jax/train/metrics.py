"""Run-directory logging: metrics as JSON lines (always) and TensorBoard event files (by config, through
``tensorboardX``), and loss curves drawn from the JSON lines."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from nlp_jax.train.records import dumps


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, lines after the restored step are dropped first. With
    ``tensorboard=True`` every record's scalars also go to ``tensorboard/`` beside it, at its step.
    ``enabled=False`` (every process of a multi-process run but the first) writes nothing."""

    def __init__(self, path: str | Path, resume_step: int | None = None, tensorboard: bool = False,
                 enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        self.writer = None
        if not enabled:
            return
        if tensorboard:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=resume_step)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            self.path.write_text("".join(dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        """Append one record; NaN and infinities are written as null (strict JSON)."""
        if not self.enabled:
            return
        clean = {k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(dumps(clean) + "\n")
        if self.writer is not None:
            for name, value in clean.items():
                if name != "step" and not isinstance(value, str):
                    self.writer.add_scalar(name, value, clean["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl``. A line that is not a JSON object with a step (the partial last
    line of a crash mid-write, a blank line) is skipped with a message naming the file and the line."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            if isinstance(record, dict) and "step" in record:
                records.append(record)
                continue
        except json.JSONDecodeError:
            pass
        if line.strip():
            print(f"{path}: line {number} is not a complete metrics record ({line[:60]!r}); dropped", file=sys.stderr)
    return records


def plot_losses(metrics_path: str | Path, out_png: str | Path, title: str = "",
                keys: tuple[str, ...] = ("loss", "val_loss", "val_loss_estimate")) -> Path:
    """The losses named by ``keys`` against step (log-scale y when every value is positive: a policy-gradient
    loss is not; training metrics as lines, evaluations as markers), and the learning rate, from
    ``metrics.jsonl``."""
    from matplotlib.figure import Figure  # no pyplot: nothing global, nothing to close

    records = read_metrics(metrics_path)
    fig = Figure(figsize=(7, 6))
    ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    # fixed margins: a tight layout draws the figure once more to measure it (most of a plot's time, and every
    # training run writes one)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.94, bottom=0.08, hspace=0.06)
    positive = True
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts), "o-" if len(pts) < 50 else "-", label=key, markersize=4, linewidth=1)
            positive &= min(v for _, v in pts) > 0
    ax.set_yscale("log" if positive else "linear")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    lr = [(r["step"], r["lr"]) for r in records if "lr" in r]
    if lr:
        ax_lr.plot(*zip(*lr))
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    fig.savefig(out_png, dpi=120)
    return Path(out_png)
