"""What the report commands (evaluate, outside, robustness, domain) share: the flags that say which model and
data they read and where they write, and how a report is written (JSON for tools, Markdown for people)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CIFAKE = Path("../shared/data/cifake")
OUTSIDE = Path("../shared/data/outside")


def report_parser(description: str | None, outside: bool = False) -> argparse.ArgumentParser:
    """A parser with --model, --data (CIFAKE, any Kaggle-layout folder), --out and, when the report reads
    them, --outside images."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--data", type=Path, default=CIFAKE, help="CIFAKE, in the Kaggle layout")
    if outside:
        parser.add_argument("--outside", type=Path, default=OUTSIDE, help="images from outside CIFAKE (evaluation only)")
    parser.add_argument("--out", type=Path, default=Path("model/reports"))
    return parser


def write_report(out: Path, stem: str, report: dict[str, Any], text: str) -> None:
    """``out/<stem>.json`` and ``out/<stem>.md``; the Markdown is also printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)
    print(f"[report] wrote {out}/{stem}.json and {stem}.md", file=sys.stderr)
