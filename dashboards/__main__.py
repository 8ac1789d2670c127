"""Write the dashboards into charts/modelyard/dashboards/ (`python -m dashboards`), or `--check` that they are current.

The chart ships those JSON files as ConfigMaps for Grafana's dashboard sidecar; a unit test runs the check, so a
panel changed here without regenerating fails CI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gm

from dashboards.operator_board import operator
from dashboards.serving_board import serving
from dashboards.training_board import training

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "charts" / "modelyard" / "dashboards"
DASHBOARDS: dict[str, Callable[[], gd.Dashboard]] = {
    "training.json": training,
    "serving.json": serving,
    "operator.json": operator,
}


def numbered(board: gm.Dashboard) -> gm.Dashboard:
    """Give every panel and row a unique id, in layout order (Grafana links to panels by id)."""
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return board


def render() -> dict[str, str]:
    """File name → dashboard JSON, deterministic (sorted keys) so that `--check` can compare text."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {name: encoder.encode(numbered(build().build())) + "\n" for name, build in DASHBOARDS.items()}


def stale_files(folder: Path) -> list[str]:
    """Names of the dashboards whose file in `folder` is missing or differs from the code."""
    return [
        name for name, text in render().items() if not (folder / name).is_file() or (folder / name).read_text() != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description="Write Modelyard's Grafana dashboards.")
    parser.add_argument("--check", action="store_true", help="fail if the files on disk differ from the code")
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR, help="folder to write into")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.output)
        if stale:
            print(f"dashboards differ from the code: {', '.join(stale)}; run `python -m dashboards`", file=sys.stderr)
            return 1
        print("dashboards match the code")
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.output / name).write_text(text)
        print(f"wrote {args.output / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
