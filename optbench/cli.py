"""The `optbench` command's parser and subcommands: run recipes, print and compare result tables, gate releases,
show the environment; and the --help layout and path arguments the GPU check and pack share. How the process runs
and ends (exit codes, Ctrl-C and SIGTERM, a closed pipe): command.py."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optbench import __version__
from optbench.command import run_command
from optbench.errors import OptbenchError

if TYPE_CHECKING:
    import pandas as pd

    from optbench.failures import FailedJob
    from optbench.report import Report

EPILOG = """examples:
  optbench run recipes/baseline.toml            fine-tune (once, cached), evaluate and benchmark the default
  optbench run recipes/distill.toml             a 3-layer and a 2-layer student beside their teacher
  optbench run recipes/quantize-dynamic.toml --model ./my-model --dataset my.csv   INT8 of your own model
  optbench run recipes/peers.toml               optbench's INT8 beside optimum-onnx and torchao, one run
  optbench run recipes/all.toml --dry-run       check a recipe and print its plan (steps cached or not, jobs)
  optbench report results/                      every report under results/ as a Markdown table
  optbench report results/ --format csv -o t.csv  the same as CSV, one row per variant x runtime x shape
  optbench report results/all/RUN --format html -o page.html   a page with the latency-accuracy plot
  optbench compare results/all/OLD results/all/NEW   what changed, marked better / worse / not significant
  optbench compare HEAD~1:results/all results/all --only-changes   against the results committed before
  optbench gate --budget recipes/budgets.toml results/all   pass or fail a release on its budgets
  optbench gate --budget recipes/budgets.toml results/all --junit gate.xml   the same, and JUnit XML for CI
  optbench gate --budget recipes/budgets.toml results/all --json gate.json   the same, and JSON for a script
  optbench env                                  the environment fingerprint stored in every report

exit codes: 0 success, 1 a gate check failed or a run had failed jobs or steps (recorded,
            the rest measured), 3 a gate check was inconclusive, 2 bad input (the message names
            the problem and the fix), 130 interrupted (Ctrl-C or SIGTERM), 141 the output's
            reader left early (`| head`)"""
# what an output option (report -o, compare -o, gate --junit and --json) refuses, in its --help: output_paths
NOT_AN_INPUT = " (not a file the command reads, nor a file already in a run folder it reads: refused, exit 2)"


class _CommandParser(argparse.ArgumentParser):
    """A command's parser, which refuses the arguments it does not know itself: argparse left them to optbench's
    parser, whose usage lists no command's options (`optbench report results --bogus` printed `optbench: error:
    unrecognized arguments`, where a missing argument or a bad value is told by `optbench report: error:`)."""

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, unknown = super().parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed, unknown


def _examples(command: str) -> str:
    """The EPILOG's examples of one command, for that command's --help."""
    lines = [line for line in EPILOG.splitlines() if line.startswith(f"  optbench {command} ")]
    return "examples:\n" + "\n".join(lines)


def help_text(description: str, epilog: str) -> dict[str, Any]:
    """The --help layout of every optbench parser (the `optbench` command and its commands, the GPU check and
    pack), as ArgumentParser keywords: `description` wrapped to 79 columns, never inside a hyphenated word,
    and `epilog` (examples, exit codes) kept as written."""
    return {
        "description": textwrap.fill(description, 79, break_on_hyphens=False),
        "epilog": epilog,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def where_argument(text: str) -> str:
    """The argparse type of every argument that names a file or folder, kept as written (compare's sides may be
    REV:PATH): refuses an empty one, which Path reads as the current folder (`--results ""` wrote into it,
    `report ""` read it), and one of blanks only, a name no one means."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"an empty path ({text!r}) names no file or folder: give one (. for the current folder)"
        )
    return text


def path_argument(text: str) -> Path:
    """`where_argument`, as a Path: the type of every path argument."""
    return Path(where_argument(text))


def output_argument(text: str) -> Path:
    """`path_argument` for a file an option writes (report -o, compare -o, gate --junit and --json): refuses `-`,
    which many tools read as stdout; taken as a name, it wrote a file named - in the current folder, and printed
    nothing. /dev/stdout is written to, as any device or pipe is."""
    if text == "-":
        raise argparse.ArgumentTypeError(
            "'-' would be a file named - here, not stdout: give a file name (/dev/stdout for stdout)"
        )
    return path_argument(text)


def build_parser() -> argparse.ArgumentParser:
    from optbench.peers.speedup import DEFAULT_BUDGET_POINTS
    from optbench.steps import STEPS

    parser = argparse.ArgumentParser(
        prog="optbench",
        **help_text("Optimize BERT-family text classifiers and benchmark every variant the same way.", EPILOG),
    )
    parser.add_argument("--version", action="version", version=f"optbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    # -v after the command too (`optbench run RECIPE -v`); SUPPRESS keeps a -v given before it
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug detail")

    def add_command(name: str, *, help: str, description: str) -> argparse.ArgumentParser:
        """A command whose --help ends with its examples."""
        return commands.add_parser(name, help=help, parents=[verbose], **help_text(description, _examples(name)))

    run = add_command(
        "run",
        help="run a recipe: baseline, steps, then the benchmark matrix",
        description="Run a recipe file end to end. Step outputs are cached, so a re-run only redoes what "
        "changed; reports land in RESULTS/<recipe name>/<run id>/, all of them or none. The benchmark is a "
        "sweep of jobs, each stored as it ends: run an interrupted recipe again to resume it, and a failed "
        "job, or a failed peer step (peer-*: its environment or its tool), is recorded with its reason while "
        "the others go on (exit code 1). A step this machine cannot run (tensorrt without TensorRT or a CUDA GPU) "
        "is refused before the first step (exit 2; --dry-run lists all this machine cannot run). "
        f"Steps a recipe can list: {', '.join(STEPS)} (README, section Steps).",
    )
    run.add_argument("recipe", type=path_argument, help="a recipe file, e.g. recipes/baseline.toml")
    run.add_argument("--results", type=path_argument, default=Path("results"), help="results folder (default: results)")
    run.add_argument(
        "--cache",
        type=path_argument,
        default=None,
        help="cache for trained and optimized models and the peers' environments (default: $OPTBENCH_CACHE or "
        "~/.cache/optbench)",
    )
    run.add_argument(
        "--model",
        type=path_argument,
        help="run on this checkpoint folder instead of the recipe's [model] checkpoint: a trained classifier, "
        "or an encoder that optbench fine-tunes first",
    )
    run.add_argument(
        "--dataset",
        type=path_argument,
        help="use this CSV, JSONL or JSON file instead of the recipe's [dataset] source (the recipe's column and "
        "split settings still apply: text and label columns by default; --text-column and --label-column set others)",
    )
    for column, holds in (("text", "the texts"), ("label", "the labels (one class per row)")):
        run.add_argument(
            f"--{column}-column",
            metavar="NAME",
            help=f"the dataset file's column of {holds}, instead of the recipe's [dataset] {column}_column "
            f"(default: {column})",
        )
    run.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where the benchmark jobs run: local (this machine, one at a time; default) or ray (Ray tasks; "
        "pip install 'optbench[ray]')",
    )
    run.add_argument(
        "--address",
        help="ray: the cluster to join (auto: this node's cluster or RAY_ADDRESS; head:6379; ray://head:10001); "
        "default: start a local Ray runtime",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check the recipe, the model, the data and the executor as a run does before its first step, then "
        "print what the run would do (the steps in order and whether each output is cached, the variants, runtimes, "
        "shapes, the number of benchmark jobs, where the reports go and whether the run resumes an unfinished sweep, "
        "the run's warning about threads, a warning for each runtime or step this machine cannot run) and stop: "
        "nothing is trained, exported, measured or written. Exit 0 when the recipe is valid (what this machine "
        "lacks is only a warning, though a run here refuses a step it cannot run), 2 when the recipe is not",
    )
    run.set_defaults(handler=_run)

    report = add_command(
        "report",
        help="print the comparison table of every report under a folder",
        description="Read every optbench report under each PATH (a folder or one file) and print one table: one "
        "row per variant, runtime, device, precision, batch size and sequence length; a run found twice (named twice, "
        "or copied into another folder) is listed once. Failed jobs of those runs are listed under their run's table "
        "(md, html), or on stderr (csv, json, --by-machine).",
    )
    report.add_argument(
        "paths",
        type=path_argument,
        nargs="*",
        default=[Path("results")],
        metavar="PATH",
        help="results folders or report files, e.g. several machines' (default: results)",
    )
    report.add_argument(
        "--format",
        choices=["md", "csv", "json", "html"],
        default="md",
        help="table format (default: md); html writes a page with a latency-versus-accuracy plot per run "
        "(PNG beside it, Pareto front highlighted) and needs -o",
    )
    report.add_argument(
        "-o", "--output", type=output_argument, help=f"write the table to this file instead of stdout{NOT_AN_INPUT}"
    )
    report.add_argument(
        "--by-machine",
        action="store_true",
        help="merge machines: a row per variant, runtime, device, precision and shape, each machine's p50, speedup "
        "and A/A noise floor side by side (keyed by hardware fingerprint, the newest report of each; a speedup within "
        "its machine's floor is marked ~); runs of different workloads get rows of their own, named in a workload "
        "column; a legend says what each machine and workload key is (on stderr with csv and json)",
    )
    report.add_argument(
        "--shape",
        help="html: the batch x sequence length the plots show, e.g. 1x128 or 8xdata; a run not measured at it says "
        "so, and a shape no run shown measured is refused, naming those measured (default: 1x128, or a run's smallest "
        "measured shape when it did not measure 1x128)",
    )
    report.add_argument(
        "--peer-budget",
        type=_points,
        default=None,  # given or not: --by-machine refuses a given one
        metavar="POINTS",
        help="runs with peers (recipes/peers.toml): speedup_vs_peer compares each variant within this accuracy "
        "drop, in percentage points, with the fastest peer within it at the same shape "
        f"(default: {DEFAULT_BUDGET_POINTS}; not with --by-machine, whose table has no speedup_vs_peer)",
    )
    report.add_argument(
        "--against",
        metavar="ROW",
        help="add speedup_vs: each row's speedup over ROW of the same run, machine and shape, written "
        "VARIANT[/RUNTIME[/DEVICE[/PRECISION]]] as the table shows them (its columns, or its All rows line), e.g. "
        "baseline/torch/cuda/fp32 for a GPU run, baseline+onnx/onnxruntime to see what quantizing the export "
        "bought (speedup_p50 stays against PyTorch eager FP32 on the CPU)",
    )
    report.set_defaults(handler=_report)

    compare = add_command(
        "compare",
        help="compare two sets of results figure by figure",
        description="Compare results A (before) with B (after): two run folders, two machines' results, or "
        "results committed in git (REV:PATH, e.g. HEAD~1:results/all). Rows are matched by variant, runtime, "
        "device, precision and shape, and by machine where a side holds several (each side's newest report per "
        "row). Each figure is marked better or "
        "worse when the two 95% intervals do not overlap and, for timings, the change exceeds the runs' "
        "A/A noise floor (both in percent of the two figures' mean); else not significant. Rows only in A are newly "
        "failing (with the reason B's failures.json records, where B's newest run failed them), rows only in B "
        "new, and rows whose workloads differ (data, max_length, threads, timing, max_batches, rounds: the why "
        "column names which) not comparable. "
        "With --budget, every budget check that A's newest run passed (or left inconclusive) and B's newest run "
        "fails, cannot judge (the budget's shape not measured, its job or step failed) or has no report for is "
        "listed as newly failing too. compare exits 0 whatever it marks (worse, newly failing, with --budget too): "
        "to pass or fail a release in CI, use optbench gate, whose exit code does.",
    )
    # metavars as the description names them (A, B, RESULTS): lower case, `results` read as the folder's name
    compare.add_argument(
        "a", metavar="A", type=where_argument, help="results before: a folder, a report file, or REV:PATH"
    )
    compare.add_argument("b", metavar="B", type=where_argument, help="results after, the same way")
    compare.add_argument("--format", choices=["md", "csv", "json"], default="md", help="table format (default: md)")
    compare.add_argument(
        "--only-changes",
        action="store_true",
        help="leave out the not-significant figures (none left: md says no changes, csv is its header, json [])",
    )
    compare.add_argument(
        "--budget",
        type=path_argument,
        help="budgets file (as for gate): also mark newly failing every check A's newest run did not fail and B's "
        "does not pass",
    )
    compare.add_argument(
        "-o", "--output", type=output_argument, help=f"write the table to this file instead of stdout{NOT_AN_INPUT}"
    )
    compare.set_defaults(handler=_compare)

    gate = add_command(
        "gate",
        help="check a run against budgets; the exit code passes or fails a release",
        description="Check the newest run under RESULTS against every limit of a budget file (README, "
        "section Release gates). A check passes when the figure's 95% interval is within the limit, fails "
        "when it is wholly beyond it, and is inconclusive when it straddles it. Exit 0 when all pass, 1 when "
        "any fails, 3 when none fails but some are inconclusive (1 with --strict), 2 on bad input (a budget "
        "file or results folder: the message says which).",
    )
    gate.add_argument(
        "results",
        metavar="RESULTS",
        type=path_argument,
        help="a run folder (results/<recipe>/<run id>) or a folder of runs",
    )
    gate.add_argument("--budget", type=path_argument, required=True, help="budget file, e.g. recipes/budgets.toml")
    gate.add_argument("--strict", action="store_true", help="count inconclusive checks as failures")
    gate.add_argument(
        "--junit", type=output_argument, help=f"also write the checks as JUnit XML for CI systems{NOT_AN_INPUT}"
    )
    gate.add_argument(
        "--json",
        type=output_argument,
        help="also write the verdict as JSON for scripts: the run, counts, exit code and each check's figure, "
        f"interval and limit (README, section Release gates){NOT_AN_INPUT}",
    )
    gate.set_defaults(handler=_gate)

    env = add_command(
        "env",
        help="print the environment fingerprint recorded in reports",
        description="Print, as JSON, the environment fingerprint every report carries: CPU model and flags, "
        "cpufreq governor and boost, memory, GPUs and NVIDIA_TF32_OVERRIDE, library versions, thread settings, git "
        "commit, and a short GEMM calibration.",
    )
    env.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        help="the thread count a run would use, recorded as threads.requested (default: none recorded)",
    )
    env.set_defaults(handler=_env)
    return parser


def _run(args: argparse.Namespace) -> int:
    from optbench.executors import check_executor, make_executor
    from optbench.failures import FAILURES_FILE, load_failures
    from optbench.output_paths import check_folder_can_be_written
    from optbench.pipeline import default_cache_dir, run_recipe
    from optbench.recipe import load_recipe, with_inputs
    from optbench.report import load_reports
    from optbench.table import render, to_frame

    recipe = with_inputs(
        load_recipe(args.recipe),
        model=args.model,
        dataset=args.dataset,
        text_column=args.text_column,
        label_column=args.label_column,
    )
    cache = (args.cache or default_cache_dir()).resolve()
    for option, folder in (("--results", args.results / recipe.name), (_cache_option(args.cache, cache), cache)):
        check_folder_can_be_written(option, folder)
    if args.dry_run:
        from optbench.dry_run import describe, plan_run

        where, here = check_executor(args.executor, args.address)
        print(describe(plan_run(recipe, args.results, cache, here=here), where))
        return 0
    gpu = any(spec.device == "cuda" for spec in recipe.bench.runtimes)
    executor = make_executor(args.executor, args.address, recipe.bench.threads, gpu)  # before any step runs
    try:  # the steps and every job (its engine caches) are given the cache folder: os.environ is left alone
        folder = run_recipe(recipe, args.results, cache, executor)
    finally:
        executor.close()
    print(render(to_frame(load_reports(folder)), "md"))
    print(f"reports written to {folder} (report.html: the table and the latency-versus-accuracy plot)")
    failed = load_failures(folder)
    if failed:
        print(_failure_lines(failed), file=sys.stderr)
        where = folder / FAILURES_FILE
        print(f"{len(failed)} failed (steps or jobs): their variants have no report ({where})", file=sys.stderr)
        return 1
    return 0


def _cache_option(given: Path | None, cache: Path) -> str:
    """Where the cache folder was named, for an error about it: --cache, else $OPTBENCH_CACHE, else nowhere (the
    default `cache`, named: under a $HOME the user never set, the error named only a folder such as /, which --cache
    replaces); the error said --cache to a user who had set only $OPTBENCH_CACHE."""
    if given is not None:
        return "--cache"
    if os.environ.get("OPTBENCH_CACHE"):
        return "$OPTBENCH_CACHE"
    return f"the default cache folder {cache} (--cache names another)"


def _failure_lines(failed: list[FailedJob]) -> str:
    return "\n".join(f"failed: {f.describe()}" for f in failed)


def _points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:  # no drop is within nan points: every speedup_vs_peer would be empty
        raise argparse.ArgumentTypeError(f"{text!r} is not an accuracy drop in points: give a number like 1.0")
    return value


def _thread_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a thread count: give a whole number, 1 or more")
    return int(text)


def _report(args: argparse.Namespace) -> int:
    from optbench.failures import FAILURES_FILE, run_failures
    from optbench.report import distinct, report_files
    from optbench.sweep import unfinished_note
    from optbench.table import render

    if args.shape is not None and args.format != "html":  # an empty one too: refused, not taken for none
        raise OptbenchError(
            "--shape picks the shape of the HTML page's plots; the tables show every shape: add --format html "
            "-o PAGE.html, or drop --shape"
        )
    # a run named twice (a folder and a run inside it, a shell glob over both) or copied elsewhere counts once
    found = [pair for path in args.paths for pair in report_files(path)]
    reports = distinct(found)
    if not reports:
        shown = " ".join(str(p) for p in args.paths)
        note = "".join(unfinished_note(path) for path in args.paths)
        raise OptbenchError(f"no optbench reports under {shown}{note or ': run a recipe first (optbench run RECIPE)'}")
    # each run's failures.json beside its reports, as gate and compare find it (a report file named alone too)
    run_ids = dict.fromkeys(report.run_id for report in reports)
    failed = list(dict.fromkeys(failure for run_id in run_ids for failure in run_failures(found, run_id)))
    # the reports and the failures.json beside them (refuse_overwriting_inputs passes over one that is not there)
    read = [file for file, _ in found] + [file.parent / FAILURES_FILE for file, _ in found]
    listed: set[str] = set()  # the runs whose failed jobs the output lists under their tables
    if args.by_machine:
        from optbench.machines import merge_by_machine, merged_legend, render_merged

        if args.format == "html":
            raise OptbenchError("--by-machine writes md, csv or json: drop --format html")
        if args.against is not None:
            raise OptbenchError("--by-machine compares machines, --against rows of one run: drop one of them")
        if args.peer_budget is not None:
            raise OptbenchError("--by-machine tables have no speedup_vs_peer: drop --peer-budget, or --by-machine")
        merged = merge_by_machine(reports)
        _emit(render_merged(merged, args.format), args.output, read)
        if args.format != "md" and not merged.empty:  # the columns' machine and workload keys, for the reader
            print("\n".join(merged_legend(merged)), file=sys.stderr)
    elif args.format == "html":
        from optbench.html_report import html_files, parse_shape, write_html
        from optbench.output_paths import refuse_overwriting_inputs

        if args.output is None:
            raise OptbenchError("--format html needs -o PAGE.html: the plots are written beside the page")
        shape = None if args.shape is None else parse_shape(args.shape)
        frame = _table(reports, args)
        refuse_overwriting_inputs("-o", html_files(frame, args.output), read)  # the plots beside the page too
        for path in write_html(frame, args.output, shape, failed):
            print(f"wrote {path}")
        listed = set(frame["run_id"])
    else:
        frame = _table(reports, args)
        _emit(render(frame, args.format, failed), args.output, read)
        listed = set(frame["run_id"]) if args.format == "md" else set()
    unlisted = [failure for failure in failed if failure.run_id not in listed]  # CSV and JSON hold none
    if unlisted:
        print(_failure_lines(unlisted), file=sys.stderr)
    return 0


def _table(reports: list[Report], args: argparse.Namespace) -> pd.DataFrame:
    """The reports' table, with speedup_vs when --against chose a row."""
    from optbench.peers.speedup import DEFAULT_BUDGET_POINTS
    from optbench.relative_speedup import RowChoice, add_speedup_vs, require_row
    from optbench.table import to_frame

    frame = to_frame(reports, DEFAULT_BUDGET_POINTS if args.peer_budget is None else args.peer_budget)
    if args.against is None:  # an empty --against is refused by RowChoice.parse, not taken for no row
        return frame
    try:
        choice = RowChoice.parse(args.against)  # as a budget's speedup_against
    except OptbenchError as exc:
        raise OptbenchError(f"--against: {exc}") from exc
    require_row(frame, choice, "--against")
    return add_speedup_vs(frame, choice)


def _compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from optbench.budget import load_budgets
    from optbench.compare import (
        budget_regressions,
        calibration_note,
        compare,
        model_note,
        open_side,
        render,
        sides,
    )
    from optbench.machines import machines
    from optbench.report import workloads_of
    from optbench.sweep import unfinished_note
    from optbench.table import to_frame

    budgets = load_budgets(args.budget) if args.budget else []
    with open_side(args.a) as a, open_side(args.b) as b:  # open until B's failed jobs are read, if they are
        for name, spec, side in (("A", args.a, a), ("B", args.b, b)):
            if not side.reports:
                note = unfinished_note(Path(spec)) or ": give a folder a recipe run wrote"
                raise OptbenchError(f"{name} ({spec}) holds no optbench reports{note}")
        reports = a.reports + b.reports
        frame_a, frame_b = to_frame(a.reports), to_frame(b.reports)
        table = compare(frame_a, frame_b, workloads_of(reports), lambda: b.failures)
        if budgets:
            regressions = budget_regressions(budgets, a.reports, b.reports, b.failures)
            table = pd.concat([regressions, table], ignore_index=True)
        read = a.files + b.files
    named = sides(frame_a, frame_b, machines(reports))
    for note in (calibration_note(frame_a, frame_b), model_note(a.reports, b.reports)):
        if note:
            named.append(note)
            if args.format != "md":  # CSV and JSON carry the rows alone: say it where a person reading the log sees it
                print(note, file=sys.stderr)
    text = render(table, args.format, only_changes=args.only_changes, named=named)
    _emit(text, args.output, read, [args.budget] if args.budget else [])
    return 0


def _emit(text: str, output: Path | None, results: Sequence[Path], inputs: Sequence[Path] = ()) -> None:
    """A table to its file (written atomically) or to stdout. The file is never one the command read, nor a file
    of the run folders it read (`output_paths`): `results` are the report files read (and `report`'s failures
    files), `inputs` the others; a failures file of a run read is in a run folder, so refused either way."""
    from optbench.atomic import write_text_atomic
    from optbench.output_paths import refuse_overwriting_inputs

    if output:
        refuse_overwriting_inputs("-o", [output], results, inputs)
        write_text_atomic(output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _gate(args: argparse.Namespace) -> int:
    from optbench.atomic import write_all_atomic
    from optbench.budget import load_budgets
    from optbench.failures import run_failures
    from optbench.gate import evaluate, exit_code, newest_run
    from optbench.gate_output import checks_json, heading, junit_xml, summary
    from optbench.output_paths import refuse_overwriting_inputs
    from optbench.report import distinct, report_files
    from optbench.sweep import unfinished_note

    budgets = load_budgets(args.budget)
    found = report_files(args.results)
    if not found:
        note = unfinished_note(args.results) or ": give a run's folder (results/<recipe>/<run id>) or a folder of runs"
        raise OptbenchError(f"no optbench reports to gate under {args.results}{note}")
    run = newest_run(distinct(found))  # a run copied into two folders is judged once
    checks = evaluate(budgets, run, run_failures(found, run[0].run_id))
    outputs = [
        (option, path, render)
        for option, path, render in (
            ("--junit", args.junit, lambda: junit_xml(checks, strict=args.strict)),
            ("--json", args.json, lambda: checks_json(checks, strict=args.strict, run=run, budget_file=args.budget)),
        )
        if path is not None
    ]
    if len({path.resolve() for _, path, _ in outputs}) < len(outputs):
        raise OptbenchError(f"--junit {args.junit} and --json {args.json} name one file: give each its own file")
    for option, path, _ in outputs:  # first: a path it cannot write exits 2 before any verdict is printed or written
        refuse_overwriting_inputs(option, [path], [file for file, _ in found], [args.budget])
    write_all_atomic([(path, render().encode("utf-8")) for _, path, render in outputs])  # both or neither
    sys.stdout.write(heading(run, args.budget))
    sys.stdout.write(summary(checks, strict=args.strict))
    return exit_code(checks, strict=args.strict)


def _env(args: argparse.Namespace) -> int:
    from optbench.environment import fingerprint

    print(json.dumps(fingerprint(args.threads), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("optbench", lambda: args.handler(args), args.verbose, _after_interrupt(args))


def _after_interrupt(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves behind, said after `interrupted; `: a run resumes where it stopped; a dry run, which
    writes nothing and has nothing to resume, is simply run again. The other commands read results and write only
    their own output (-o, --junit, --json), with no run to resume: a plain `interrupted` says it."""
    if args.command != "run":
        return ""
    if args.dry_run:
        return "a dry run writes nothing: run it again to see the whole plan"
    unfinished = "nothing was written for the unfinished run"
    return f"{unfinished}; the same command resumes it (cached steps and finished jobs are kept)"


if __name__ == "__main__":
    sys.exit(main())
