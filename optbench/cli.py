"""The `optbench` command: run recipes, print result tables, show the environment."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from optbench import __version__
from optbench.errors import OptbenchError

log = logging.getLogger("optbench")

EPILOG = """examples:
  optbench run recipes/baseline.toml            fine-tune (once, cached), evaluate and benchmark the default
  optbench run recipes/distill.toml             a 3-layer and a 2-layer student beside their teacher
  optbench report results/                      every report under results/ as a Markdown table
  optbench report results/ --format csv -o t.csv  the same as CSV, one row per variant x runtime x shape
  optbench env                                  the environment fingerprint stored in every report

exit codes: 0 success, 2 bad input (the message names the problem and the fix)"""


def build_parser() -> argparse.ArgumentParser:
    from optbench.steps import STEPS

    parser = argparse.ArgumentParser(
        prog="optbench",
        description="Optimize BERT-family text classifiers and benchmark every variant the same way.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"optbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a recipe: baseline, steps, then the benchmark matrix",
        description="Run a recipe file end to end. Step outputs are cached, so a re-run only redoes what "
        "changed; reports land in RESULTS/<recipe name>/<run id>/, all of them or none. "
        f"Steps a recipe can list: {', '.join(STEPS)} (README, section Steps).",
    )
    run.add_argument("recipe", type=Path, help="a recipe file, e.g. recipes/baseline.toml")
    run.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    run.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache for trained and optimized models (default: $OPTBENCH_CACHE or ~/.cache/optbench)",
    )
    run.set_defaults(handler=_run)

    report = commands.add_parser(
        "report",
        help="print the comparison table of every report under a folder",
        description="Read every optbench report under PATH (a folder or one file) and print one table: one row "
        "per variant, runtime, device, batch size and sequence length.",
    )
    report.add_argument("path", type=Path, nargs="?", default=Path("results"), help="results folder (default: results)")
    report.add_argument("--format", choices=["md", "csv", "json"], default="md", help="table format (default: md)")
    report.add_argument("-o", "--output", type=Path, help="write the table to this file instead of stdout")
    report.set_defaults(handler=_report)

    env = commands.add_parser("env", help="print the environment fingerprint recorded in reports")
    env.add_argument("--threads", type=int, default=None, help="thread count to record")
    env.set_defaults(handler=_env)
    return parser


def _run(args: argparse.Namespace) -> int:
    from optbench.pipeline import default_cache_dir, run_recipe
    from optbench.recipe import load_recipe
    from optbench.report import load_reports, render, to_frame

    recipe = load_recipe(args.recipe)
    folder = run_recipe(recipe, args.results, args.cache or default_cache_dir())
    print(render(to_frame(load_reports(folder)), "md"))
    print(f"reports written to {folder}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from optbench.atomic import write_text_atomic
    from optbench.report import load_reports, render, to_frame

    reports = load_reports(args.path)
    if not reports:
        raise OptbenchError(f"no optbench reports under {args.path}: run a recipe first (optbench run RECIPE)")
    text = render(to_frame(reports), args.format)
    if args.output:
        write_text_atomic(args.output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _env(args: argparse.Namespace) -> int:
    from optbench.environment import fingerprint

    print(json.dumps(fingerprint(args.threads), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Models and data are local: never ask a hub; keep transformers' load reports out of the output.
    # Set before transformers is imported, and inherited by the benchmark's job processes.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # optbench's own progress at INFO; other libraries (onnxruntime's fusion logs a line per pass) at WARNING
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.handler(args)
    except OptbenchError as exc:
        print(f"optbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("optbench: interrupted; nothing was written for the unfinished run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
