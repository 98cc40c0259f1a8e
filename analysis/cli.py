"""``kpisat``: the one entry point for running, validating and generating the sample.

Errors a user can fix (bad input, bad parameter) are shown as one line
``kpisat: error: ...`` with exit code 2; a failed notebook (an exception, a dead
kernel, a timed-out cell) exits with 1 and names the notebook and cell; Ctrl-C exits
with 130 (SIGTERM with 143) and says where the run stopped; anything unexpected prints a short message
and suggests ``--debug``, which shows the traceback. Progress and diagnostics are
logged to stderr; results (where the report is, the data-quality summary) go to stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .errors import KpisatError, NotebookError

log = logging.getLogger("analysis.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_QUIET_LIBRARIES = ("papermill", "traitlets", "nbconvert", "asyncio", "matplotlib",
                    "fontTools", "PIL", "blib2to3", "numexpr")

SOURCE_HELP = ("where the tables are: a folder of CSV/Parquet/XLSX files named after "
               "the tables, a .duckdb file, or a postgresql:// URL (password in "
               "PGPASSWORD or ~/.pgpass, never in the URL); default: the sample company")
AS_OF_HELP = ("the day the data was extracted (YYYY-MM-DD); rows dated after it are "
              "quarantined as future-dated; default: the source's run.json / kpisat_meta, "
              "else today")


# ---------------------------------------------------------------- parser
#: The commands whose parsers are defined in this module.
OWN_COMMANDS = ("run", "validate", "sample", "import", "notebooks")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``kpisat`` argument parser with its subcommands.

    With ``command`` one of :data:`OWN_COMMANDS`, ``kpisat whatif`` is left out: its
    module imports scipy and the decision models (over a second before a run starts).
    """
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="show warnings and errors only")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="show debug messages as well")
    g.add_argument("--debug", action="store_true",
                   help="show the full traceback of any error")

    parser = argparse.ArgumentParser(
        prog="kpisat",
        description="Measure how the weighting of sales KPIs in incentive plans affects "
                    "customer outcomes (churn, renewal, complaints, CSAT, NPS, bookings).",
        epilog="Run `kpisat COMMAND --help` for the options of each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", parents=[common], help="run the quarterly report",
                       description="Execute the analysis notebooks for one quarter and "
                                   "publish OUT/QUARTER/ (index.html, analyst reports, "
                                   "findings.json, manifest.json).")
    p.add_argument("--source", metavar="SOURCE", default=None, help=SOURCE_HELP)
    p.add_argument("--quarter", metavar="QUARTER", default=None,
                   help="quarter to analyse, written like 2025Q4; default: the latest "
                        "quarter that ends on or before the as-of date")
    p.add_argument("--as-of", metavar="DATE", default=None, help=AS_OF_HELP)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="reports folder; the run is published as DIR/QUARTER/ "
                        "(default: reports/ in the project)")
    p.add_argument("--lang", choices=("en", "zh"), default="en",
                   help="language of the leadership report (default: en)")
    p.add_argument("--timeout", metavar="S", type=float, default=600,
                   help="seconds a single notebook cell may run before the run fails "
                        "(default: 600)")
    p.add_argument("--jobs", metavar="N", type=int, default=None,
                   help="how many independent notebooks run at once (default: one per "
                        "core, at most 2); the published report does not depend on it")
    p.add_argument("-p", "--param", metavar="NAME=VALUE", action="append", default=[],
                   help="an extra notebook parameter; NAME must be declared in a "
                        "notebook's parameters cell (repeatable)")
    p.add_argument("--notebooks-dir", metavar="DIR", default=None,
                   help="run the notebooks of this folder instead of notebooks/")
    p.add_argument("--pseudonymise", action="store_true",
                   help="replace rep and customer ids in every output by keyed HMACs; "
                        "the key comes from the KPISAT_PSEUDONYM_KEY environment variable "
                        "(at least 16 characters) and is never written anywhere")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", parents=[common], help="check the input data",
                       description="Read and validate the input tables; print how many rows "
                                   "each table has, how many are used and why the others "
                                   "are quarantined.")
    p.add_argument("--source", metavar="SOURCE", default=None, help=SOURCE_HELP)
    p.add_argument("--as-of", metavar="DATE", default=None, help=AS_OF_HELP)
    p.add_argument("--quarantine", metavar="CSV", default=None,
                   help="also write every quarantined row (table, row, id, column, raw "
                        "value, reason) to this CSV file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("sample", parents=[common], help="generate the sample company",
                       description="Generate the seeded sample company (tables and its "
                                   "ground truth) into a folder.")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder to write the tables to (created if missing)")
    p.add_argument("--seed", metavar="N", type=int, default=7,
                   help="random seed; the same seed gives the same company (default: 7)")
    p.add_argument("--scale", metavar="X", type=float, default=1.0,
                   help="size multiplier for customers and deals (default: 1.0)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("import", parents=[common], help="import a CRM export",
                       description="Map a CRM export (Salesforce, Zoho CRM, Jiandaoyun, "
                                   "DingTalk, or your own mapping YAML) onto the canonical "
                                   "tables; write them with import_report.json and "
                                   "import_quarantine.csv. See docs/importing.md.")
    p.add_argument("--preset", "--mapping", dest="mapping", metavar="NAME|YAML",
                   help="a preset name (see --list-presets) or the path of your own "
                        "mapping, copied from analysis/presets/template.yaml")
    p.add_argument("--from", dest="source_dir", metavar="DIR",
                   help="folder holding the export files (never modified)")
    p.add_argument("--to", dest="out_dir", metavar="DIR",
                   help="folder to write the canonical tables to (then use it as --source)")
    p.add_argument("--as-of", metavar="DATE", default=None,
                   help="the day the export was taken (YYYY-MM-DD); written to run.json "
                        "and used to tell pending contracts; default: today")
    p.add_argument("--describe", action="store_true",
                   help="only show how the mapping meets the export: required columns "
                        "unmapped, source columns unused")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("notebooks", parents=[common], help="sync the paired notebooks",
                       description="The notebooks' py:percent files are their source; the "
                                   ".ipynb files are generated from them.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sync", action="store_true",
                      help="regenerate every notebooks/NN_*.ipynb from its .py")
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if any .ipynb differs from what its .py generates")
    p.set_defaults(func=cmd_notebooks)

    if command not in OWN_COMMANDS:
        from .decision.whatif import add_whatif_parser

        add_whatif_parser(sub)
    return parser


# ---------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    """``kpisat run``: execute and publish; print the index.html path."""
    from .runner import run

    index = run(source=args.source, quarter=args.quarter, as_of=args.as_of, out=args.out,
                lang=args.lang, timeout=args.timeout, progress=not args.quiet,
                notebooks_dir=args.notebooks_dir, params=_params(args.param),
                pseudonymise=args.pseudonymise, jobs=args.jobs)
    print(f"report: {index}")
    return EXIT_OK


def _params(pairs: list[str]) -> dict[str, str]:
    from .errors import ParameterError

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param {pair!r} must be written NAME=VALUE")
        out[name.strip()] = value
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    """``kpisat validate``: print the data-quality summary (and write the quarantine)."""
    from datetime import date

    from .prepare import normalise_source, parse_as_of
    from .sources import open_source
    from .validate import validate

    raw = open_source(normalise_source(args.source)).read()
    day = parse_as_of(args.as_of) or raw.as_of or date.today()
    validated = validate(raw, day)
    print(format_quality(validated.data_quality(), raw.description, day))
    if args.quarantine:
        target = Path(args.quarantine)
        target.parent.mkdir(parents=True, exist_ok=True)
        validated.quarantine.to_csv(target, index=False)
        print(f"quarantine: {len(validated.quarantine)} rows written to {target}")
    return EXIT_OK


def format_quality(quality: dict, description: str, day) -> str:
    """The data-quality summary as a plain-text table."""
    lines = [f"source: {description}", f"as of:  {day}", "",
             f"{'table':<18}{'read':>9}{'used':>9}{'quarantined':>13}"]
    for table, n in quality.get("rows_read", {}).items():
        lines.append(f"{table:<18}{n:>9}{quality['rows_used'].get(table, 0):>9}"
                     f"{quality['rows_quarantined'].get(table, 0):>13}")
    reasons = [(t, r, e["count"]) for t, by in quality.get("quarantined", {}).items()
               for r, e in by.items()]
    if reasons:
        lines += ["", "quarantined rows by reason:"]
        lines += [f"  {t}: {r}: {n}" for t, r, n in reasons]
    return "\n".join(lines)


def cmd_sample(args: argparse.Namespace) -> int:
    """``kpisat sample``: generate the sample company."""
    from .sample import generate

    info = generate(Path(args.out), seed=args.seed, scale=args.scale) or {}
    rows = info.get("rows", {})
    print(f"sample: written to {args.out} (seed {args.seed}, scale {args.scale}, as of "
          f"{info.get('as_of', '?')}; {sum(rows.values())} rows in {len(rows)} tables)")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """``kpisat import``: map a CRM export onto the canonical tables."""
    from .errors import ParameterError
    from .importers import describe_mapping, import_export, list_presets
    from .prepare import parse_as_of

    if args.list_presets:
        print("\n".join(list_presets()))
        return EXIT_OK
    if not args.mapping or not args.source_dir:
        raise ParameterError("kpisat import needs --preset NAME (or --mapping FILE) and "
                             "--from DIR")
    if args.describe:
        print(describe_mapping(args.mapping, Path(args.source_dir)))
        return EXIT_OK
    if not args.out_dir:
        raise ParameterError("kpisat import needs --to DIR for the canonical tables")
    report = import_export(args.mapping, Path(args.source_dir), Path(args.out_dir),
                           as_of=parse_as_of(args.as_of))
    print(report.summary())
    print(f"tables: {args.out_dir} (quarantined rows: "
          f"{Path(args.out_dir) / 'import_quarantine.csv'})")
    return EXIT_OK


def cmd_notebooks(args: argparse.Namespace) -> int:
    """``kpisat notebooks``: regenerate or check the .ipynb files."""
    from .notebooks import check, sync

    if args.sync:
        for path in sync():
            print(f"wrote {path}")
        return EXIT_OK
    stale = check()
    for path in stale:
        print(f"out of date: {path} (run `kpisat notebooks --sync`)")
    return EXIT_FAILED if stale else EXIT_OK


# ---------------------------------------------------------------- main
def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """INFO (or WARNING with -q, DEBUG with -v) from kpisat to stderr, short lines."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kpisat: %(message)s" if not verbose
                                           else "kpisat: %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("analysis").setLevel(level)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    if not verbose:  # nbclient's "Kernel died ..." / "Timeout ..." repeat the one-line error
        logging.getLogger("papermill").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kpisat`` with ``argv``; return the exit code (never raises)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    try:
        return args.func(args)
    except KpisatError as e:
        if args.debug:
            raise
        code = EXIT_FAILED if isinstance(e, NotebookError) else EXIT_USAGE
        sys.stderr.write(f"kpisat: error: {e}\n")
        return code
    except KeyboardInterrupt as e:  # a run says where it stopped and where it is kept
        message = str(e).strip().splitlines()[0] if str(e).strip() else "interrupted"
        sys.stderr.write(f"kpisat: {message}\n")
        return getattr(e, "exit_code", EXIT_INTERRUPTED)
    except Exception as e:  # noqa: BLE001 - the last line of defence for users
        if args.debug:
            raise
        sys.stderr.write(f"kpisat: error: unexpected {type(e).__name__}: {_first_line(e)} "
                         "(rerun with --debug to see the traceback)\n")
        return EXIT_FAILED


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"


if __name__ == "__main__":
    sys.exit(main())
