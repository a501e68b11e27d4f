"""The ``spicedsl`` command line: parses arguments, calls the API, prints results.

Results go to stdout, messages to stderr. A mistake in the user's input ends with its
message and exit code 1 (2 for a wrong command line), never with a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spicedsl import __version__
from spicedsl.errors import EXIT_USAGE_ERROR, SpiceError, UsageError

DESCRIPTION = """\
spicedsl: write a SPICE model as a short text file, fit it to choice data, and get the
discovered equations back in the same language.

  spicedsl check model.spice            check a model and report every error
  spicedsl fmt model.spice              print the model in canonical form
  spicedsl compile model.spice          print the generated torch code
  spicedsl simulate model.spice -o data.csv
  spicedsl fit model.spice data.csv -o results/
  spicedsl evaluate model.spice data.csv
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2 with its own text
        raise UsageError(f"{message}\n(see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spicedsl", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"spicedsl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = commands.add_parser("check", help="check model files; exit 1 on any error")
    check.add_argument("models", nargs="+", metavar="MODEL")

    fmt = commands.add_parser("fmt", help="print a model in canonical form")
    fmt.add_argument("model", metavar="MODEL")
    fmt.add_argument("--check", action="store_true", help="print nothing; exit 1 if not canonical")

    compile_ = commands.add_parser("compile", help="print the generated torch module")
    compile_.add_argument("model", metavar="MODEL")
    compile_.add_argument("-o", "--output", metavar="OUT.py", help="write here, not stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            _parser().print_help(sys.stderr)
            return EXIT_USAGE_ERROR
        return _COMMANDS[args.command](args)
    except SpiceError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _check(args: argparse.Namespace) -> int:
    from spicedsl.frontend import checked_program, read_source

    failed = False
    for path in args.models:
        try:
            checked_program(read_source(Path(path)))
        except SpiceError as error:
            print(error.render(), file=sys.stderr)
            failed = True
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _fmt(args: argparse.Namespace) -> int:
    from spicedsl.frontend import read_source
    from spicedsl.printer import format_program
    from spicedsl.syntax.parser import parse

    source = read_source(Path(args.model))
    formatted = format_program(parse(source.text, source.name), source.text)
    if args.check:
        if formatted != source.text:
            print(f"{args.model}: not in canonical form (run 'spicedsl fmt')", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(formatted)
    return 0


def _compile(args: argparse.Namespace) -> int:
    from spicedsl.api import compile_model
    from spicedsl.files import write_atomic

    code = compile_model(Path(args.model))
    if args.output:
        write_atomic(args.output, code)
    else:
        sys.stdout.write(code)
    return 0


_COMMANDS = {"check": _check, "fmt": _fmt, "compile": _compile}


if __name__ == "__main__":
    sys.exit(main())
