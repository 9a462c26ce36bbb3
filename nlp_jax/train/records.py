"""What every run directory holds, written one way: ``config.json`` (the resolved config) and
``summary.json`` (the results), and the Markdown tables experiments and benchmarks print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlp_jax.train.config import to_dict


def write_config(workdir: str | Path, config: Any) -> Path:
    """``<workdir>/config.json``: the resolved config dataclass as JSON."""
    path = Path(workdir, "config.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(config), indent=2))
    return path


def write_summary(workdir: str | Path, summary: dict, *, echo: bool = True) -> dict:
    """``<workdir>/summary.json`` (and the same JSON on the terminal unless ``echo=False``); returns summary."""
    text = json.dumps(summary, indent=2)
    path = Path(workdir, "summary.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if echo:
        print(text)
    return summary


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table with columns padded to their widest cell."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)
