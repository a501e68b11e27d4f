"""The ``spicedsl`` command line: parses arguments, calls the API, prints results.

Results go to stdout, messages to stderr. A mistake in the user's input ends with its
message and exit code 1 (2 for a wrong command line), never with a traceback.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from spicedsl import __version__
from spicedsl.errors import EXIT_USAGE_ERROR, SpiceError, UsageError
from spicedsl.files import STDOUT, drop_stdout, flush_stdout, write_output
from spicedsl.runtime.param_table import UNKNOWN_PARTICIPANTS
from spicedsl.settings import BASELINE_HIDDEN, MAX_ACTIONS, MISSED_TRIALS, OPTIONS, TRAINING_OPTIONS
from spicedsl.source import printable

# The exit code when stdout is closed early (as by 'spicedsl ... | head'): that of a
# command stopped by SIGPIPE in a shell.
EXIT_CLOSED_STDOUT = 141
# Seeds of the random generators: 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1

DESCRIPTION = """\
spicedsl: write a SPICE model as a short text file, fit it to choice data, and get the
discovered equations back in the same language.

  spicedsl check model.spice            check a model and report every error
  spicedsl fmt model.spice              print the model in canonical form
  spicedsl compile model.spice          print the generated torch code
  spicedsl simulate model.spice -o data.csv
  spicedsl fit model.spice data.csv -o results/
  spicedsl evaluate model.spice data.csv
  spicedsl baseline model.spice data.csv -o gru/
  spicedsl compare a.spice b.spice data.csv --folds 5 -o comparison/
  spicedsl plot model.spice data.csv --session 1 --fitted results/ -o session.png
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
    fmt.add_argument("models", nargs="+", metavar="MODEL", help="one file, or several with --check")
    fmt.add_argument(
        "--check", action="store_true", help="print nothing; exit 1 if any file is not canonical"
    )

    compile_ = commands.add_parser("compile", help="print the generated torch module")
    compile_.add_argument("model", metavar="MODEL")
    compile_.add_argument(
        "-o", "--output", metavar="OUT.py", help="write here, not stdout ('-': stdout)"
    )

    simulate = commands.add_parser("simulate", help="simulate a fully specified model")
    simulate.add_argument("model", metavar="MODEL")
    simulate.add_argument("--sessions", type=int, default=100, help="sessions (default 100)")
    simulate.add_argument("--trials", type=int, default=100, help="trials each (default 100)")
    simulate.add_argument("--actions", type=int, help="actions, if the model does not say")
    simulate.add_argument("--seed", type=_seed, default=0, help=_SEED_HELP)
    simulate.add_argument(
        "--participants",
        type=int,
        help="participants the sessions are dealt to, labelled 1 .. N (default: the model's "
        "participant table, else 1)",
    )
    simulate.add_argument(
        "--sigma", type=float, default=0.2, help="reward-probability drift per trial (0.2)"
    )
    simulate.add_argument("--network", metavar="NPZ", help="weights of a fitted network")
    simulate.add_argument(
        "--params",
        metavar="TABLE.csv",
        help="per-participant param values: a participant column, one column per param",
    )
    _add_unknown_participants_option(simulate, "participants 1 .. N of --participants")
    simulate.add_argument(
        "-o", "--output", required=True, metavar="DATA.csv", help="the data ('-': stdout)"
    )
    simulate.add_argument(
        "--latents", metavar="LATENTS.csv", help="also write probabilities and states ('-': stdout)"
    )

    fit = commands.add_parser("fit", help="train, discover equations, print the fitted model")
    fit.add_argument("model", metavar="MODEL")
    fit.add_argument("data", metavar="DATA")
    fit.add_argument("-o", "--output", metavar="OUTDIR", help="write fitted.spice, report.json")
    fit.add_argument("--overwrite", action="store_true", help="reuse a non-empty OUTDIR")
    fit.add_argument(
        "--resume",
        metavar="OUTDIR",
        help="finish an interrupted fit: take the network it trained from OUTDIR "
        "(same model, data and options)",
    )
    fit.add_argument(
        "--validation",
        type=float,
        default=0.2,
        help="fraction of the sessions (of each session's trials with --holdout-last) that "
        "choose the best epoch (0.2)",
    )
    _add_holdout_options(fit, "hold out from training and score at the end")
    fit.add_argument(
        "--no-rescale",
        action="store_true",
        help="read rewards as they are, not rescaled to [0, 1]",
    )
    fit.add_argument("--seed", type=_seed, default=0, help=_SEED_HELP)
    fit.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    fit.add_argument("--device", default="cpu", help="train on cpu (default) or cuda")
    fit.add_argument("--digits", type=int, default=4, help="significant digits printed (4)")
    fit.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_fit_settings(fit)
    _add_data_options(fit)

    baseline = commands.add_parser(
        "baseline", help="train a small GRU on what a model reads, as the bar for the model"
    )
    baseline.add_argument("model", metavar="MODEL", help="says what data the GRU reads")
    baseline.add_argument("data", metavar="DATA")
    baseline.add_argument("-o", "--output", metavar="OUTDIR", help="write report.json, network.npz")
    baseline.add_argument("--overwrite", action="store_true", help="reuse a non-empty OUTDIR")
    baseline.add_argument(
        "--hidden",
        type=_option_value(OPTIONS["hidden_size"]),
        default=BASELINE_HIDDEN,
        help=f"GRU units ({BASELINE_HIDDEN})",
    )
    baseline.add_argument(
        "--embedding", type=int, default=0, help="size of a participant embedding (0: none)"
    )
    baseline.add_argument(
        "--validation", type=float, default=0.2, help="as for fit: choose the best epoch (0.2)"
    )
    _add_holdout_options(baseline, "hold out from training and score at the end")
    baseline.add_argument("--seed", type=_seed, default=0, help=_SEED_HELP)
    baseline.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    baseline.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    baseline.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_fit_settings(baseline, TRAINING_OPTIONS)
    _add_data_options(baseline)

    plot = commands.add_parser("plot", help="draw one session: choices, probabilities, states")
    plot.add_argument("model", metavar="MODEL", help="a fully specified or a fitted model")
    plot.add_argument("data", metavar="DATA")
    plot.add_argument("--session", required=True, help="session label as in the data file")
    plot.add_argument("--truth", metavar="TRUE_MODEL", help="also draw a known true model")
    plot.add_argument(
        "--fitted", metavar="OUTDIR", help="draw the network and equations of this fit of MODEL"
    )
    plot.add_argument("-o", "--output", required=True, metavar="SESSION.png")
    _add_data_options(plot)

    evaluate = commands.add_parser("evaluate", help="NLL, accuracy, AIC, BIC of a model")
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("data", metavar="DATA")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_unknown_participants_option(evaluate, "participants of the data")
    _add_holdout_options(evaluate, "score only these (the default: every trial)")
    _add_data_options(evaluate)

    compare = commands.add_parser(
        "compare", help="cross-validate models: held-out NLL, BIC, best per participant"
    )
    compare.add_argument(
        "files", nargs="+", metavar="MODEL ... DATA", help="model files, then the data file"
    )
    compare.add_argument("--folds", type=int, default=5, help="cross-validation folds (5)")
    compare.add_argument(
        "--by",
        choices=("session", "participant"),
        default="session",
        help="deal sessions (default) or participants into the folds",
    )
    compare.add_argument(
        "-o", "--output", metavar="OUTDIR", help="write each fold's fit and the table; resume"
    )
    compare.add_argument("--json", action="store_true", help="print the table as JSON")
    compare.add_argument(
        "--workers",
        type=int,
        help="worker processes: of the local cluster (default: one per core), of SLURM; "
        "0 runs every fit in this process",
    )
    compare.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://HOST:8786), or 'slurm' (dask-jobqueue)",
    )
    compare.add_argument("--seed", type=_seed, default=0, help=_SEED_HELP)
    compare.add_argument(
        "--validation", type=float, default=0.2, help="held-out fraction of training (0.2)"
    )
    compare.add_argument("-q", "--quiet", action="store_true", help="no progress")
    _add_fit_settings(compare)
    _add_data_options(compare)
    return parser


_SEED_HELP = f"random seed, 0 to {MAX_SEED} (default 0)"


def _seed(text: str) -> int:
    """An argparse type: a seed of the random generators."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"the seed must be a whole number from 0 to {MAX_SEED}")
    return value


def _add_unknown_participants_option(parser: argparse.ArgumentParser, who: str) -> None:
    parser.add_argument(
        "--unknown-participants",
        choices=UNKNOWN_PARTICIPANTS,
        default="mean",
        help=f"{who} that the participant table lacks: the group values, its mean (the "
        "default, with a note), or an error",
    )


def _add_holdout_options(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--holdout",
        action="append",
        default=[],
        metavar="COLUMN=V1,V2,...",
        help=f"the sessions whose COLUMN (participant, session, or a column constant within "
        f"sessions, such as a block) is one of these: {purpose} (repeatable)",
    )
    parser.add_argument(
        "--holdout-last",
        type=float,
        default=0.0,
        metavar="F",
        help=f"the end of every session, states carried over from its start: {purpose}; a "
        "fraction of its trials below 1, else a number of trials",
    )


def _holdout(args: argparse.Namespace):
    from spicedsl.splits import Holdout

    return Holdout.parse(args.holdout, args.holdout_last)


def _add_fit_settings(
    parser: argparse.ArgumentParser, names: Sequence[str] = tuple(OPTIONS)
) -> None:
    for name in names:
        option = OPTIONS[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_option_value(option),
            help=option.help + " (overrides the model file)",
        )


def _option_value(option):
    """An argparse type that reads a number and checks it against the option's range."""

    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        problem = option.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{option.name} {problem}")
        return int(value) if option.integer else value

    read.__name__ = option.name
    return read


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reading the data file")
    group.add_argument(
        "--sep", help="column separator: one character, or 'tab' (default: from the header line)"
    )
    for field in _COLUMN_FIELDS:
        group.add_argument(f"--{field}-column", metavar="NAME", help=f"column holding the {field}")
    group.add_argument(
        "--choice-base", type=int, choices=(0, 1), help="first action's code (default: auto)"
    )
    group.add_argument(
        "--actions",
        type=int,
        metavar="N",
        help="number of actions (default: the model's, or from the data)",
    )
    group.add_argument(
        "--per-action",
        action="append",
        default=[],
        metavar="NAME=COL,COL,...",
        help="read data.NAME from one column per action (repeatable); e.g. "
        "rewards=reward_c1,reward_c2 (default: NAME_0, NAME_1, ...)",
    )
    group.add_argument(
        "--missed",
        choices=MISSED_TRIALS,
        default="skip",
        help="rows without a choice: keep them in place, not predicted (skip, the "
        "default), or refuse them (error)",
    )


_COLUMN_FIELDS = ("session", "choice", "reward", "participant", "block", "experiment")


def _data_options(args: argparse.Namespace) -> dict[str, object]:
    """The options of :func:`spicedsl.api.read_data` that the data flags set."""
    from spicedsl.runtime.data import ColumnMap

    if args.actions is not None and not 2 <= args.actions <= MAX_ACTIONS:
        raise UsageError(f"--actions must be between 2 and {MAX_ACTIONS}")
    mapping = {
        field: getattr(args, f"{field}_column")
        for field in _COLUMN_FIELDS
        if getattr(args, f"{field}_column")
    }
    return {
        "columns": ColumnMap(**mapping),
        "sep": _separator(args.sep),
        "choice_base": args.choice_base,
        "n_actions": args.actions,
        "per_action": _per_action(args.per_action),
        "missed": args.missed,
    }


def _per_action(mappings: list[str]) -> dict[str, list[str]]:
    """``--per-action NAME=COL,COL,...`` options as a mapping."""
    found: dict[str, list[str]] = {}
    for text in mappings:
        name, _, columns = text.partition("=")
        listed = [c.strip() for c in columns.split(",") if c.strip()]
        if not name.strip().isidentifier() or len(listed) < 2:
            raise UsageError(
                f"--per-action {text!r}: write NAME=COLUMN,COLUMN,... with one column per action"
            )
        if name.strip() in found:
            raise UsageError(f"--per-action names {name.strip()!r} twice")
        found[name.strip()] = listed
    return found


def _separator(text: str | None) -> str | None:
    """The separator that ``--sep`` names: one character, or ``tab`` (also ``\\t``)."""
    if text is None:
        return None
    separator = {"tab": "\t", "\\t": "\t"}.get(text, text)
    if len(separator) != 1 or separator in '"\r\n':
        raise UsageError(
            f"--sep {text!r}: the separator must be one character (such as ',' or ';'), "
            "other than a quote or a line break, or 'tab'"
        )
    return separator


def _read_data(args: argparse.Namespace, model):
    from spicedsl.api import read_data

    labels = _holdout(args).columns if hasattr(args, "holdout") else ()
    return read_data(args.data, model, **_data_options(args), labels=labels)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    When stdout is closed before everything is written (``spicedsl ... | head``), the
    rest of the output is dropped and the exit code is 141, as for a command stopped by
    SIGPIPE.
    """
    warnings.showwarning = _note
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            _parser().print_help(sys.stderr)
            return EXIT_USAGE_ERROR
        code = _COMMANDS[args.command](args)
        flush_stdout()
        return code
    except SpiceError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        drop_stdout()
        return EXIT_CLOSED_STDOUT
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(*_) -> None:
    """SIGTERM (a scheduler's or ``kill``'s stop) stops the work as Ctrl-C does."""
    raise KeyboardInterrupt


def _note(message, *_) -> None:
    """Print a warning of the library as a note to the user."""
    print(printable(f"note: {message}"), file=sys.stderr)


def _check(args: argparse.Namespace) -> int:
    from spicedsl.frontend import checked_program, checked_table, read_source

    failed = False
    for path in args.models:
        try:
            source = read_source(Path(path))
            checked_table(checked_program(source), source)
        except SpiceError as error:
            print(error.render(), file=sys.stderr)
            failed = True
        else:
            write_output(STDOUT, printable(f"{path}: ok\n"))
    return 1 if failed else 0


def _fmt(args: argparse.Namespace) -> int:
    from spicedsl.frontend import read_source
    from spicedsl.printer import format_program
    from spicedsl.syntax.parser import parse

    if not args.check and len(args.models) > 1:
        raise UsageError("fmt prints one file; use --check to check several")
    canonical = True
    for path in args.models:
        source = read_source(Path(path))
        formatted = format_program(parse(source.text, source.name), source.text)
        if not args.check:
            write_output(STDOUT, formatted)
        elif formatted != source.text:
            print(printable(f"{path}: not in canonical form (run 'spicedsl fmt')"), file=sys.stderr)
            canonical = False
    return 0 if canonical else 1


def _compile(args: argparse.Namespace) -> int:
    from spicedsl.api import compile_model
    from spicedsl.files import check_output

    output = args.output or STDOUT
    check_output(output, [args.model])
    write_output(output, compile_model(Path(args.model)))
    return 0


def _model_inputs(*models: str | None) -> list[str | None]:
    """The model files among ``models`` and the participant tables they name: inputs
    that an output must not replace."""
    from spicedsl.frontend import load_ir

    return [
        path
        for model in models
        if model
        for path in (model, load_ir(Path(model)).participant_table)
    ]


def _simulate(args: argparse.Namespace) -> int:
    from spicedsl.api import simulate
    from spicedsl.files import check_output

    for flag, least in (("sessions", 1), ("trials", 2), ("participants", 1), ("actions", 2)):
        if getattr(args, flag) is not None and getattr(args, flag) < least:
            raise UsageError(f"--{flag} must be at least {least}")
    if not 0 <= args.sigma < math.inf:
        raise UsageError("--sigma must be a finite number, at least 0")
    if args.latents and Path(args.latents).resolve() == Path(args.output).resolve():
        raise UsageError("--latents and -o name the same file")
    inputs = [*_model_inputs(args.model), args.params, args.network]
    for output in (args.output, args.latents):
        if output:
            check_output(output, inputs)
    dataset, latents = simulate(
        Path(args.model),
        args.sessions,
        args.trials,
        n_actions=args.actions,
        seed=args.seed,
        sigma=args.sigma,
        n_participants=args.participants,
        weights=args.network,
        param_table=args.params,
        unknown_participants=args.unknown_participants,
    )
    dataset.to_csv(args.output)
    if args.latents:
        from spicedsl.runtime.simulate import write_latents

        write_latents(args.latents, dataset, latents)
    where = "stdout" if args.output == STDOUT else args.output
    print(
        printable(
            f"wrote {dataset.n_trials} trials of {len(dataset.session_ids)} sessions to {where}"
        ),
        file=sys.stderr,
    )
    return 0


def _fit(args: argparse.Namespace) -> int:
    import time

    from spicedsl.fitted import TABLE_FILE
    from spicedsl.fitting import CHECKPOINT_FILE, fit
    from spicedsl.frontend import load_ir

    model_path = Path(args.model)
    model = load_ir(model_path)
    if args.resume:
        if args.output and Path(args.output).resolve() != Path(args.resume).resolve():
            raise UsageError("--resume OUTDIR writes its results there; leave out -o")
        args.output = args.resume
    _check_output_dir(args, model, args.overwrite or bool(args.resume))
    data = _read_data(args, model)
    settings = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    started = time.time()
    try:
        result = fit(
            model_path,
            data,
            validation=args.validation,
            holdout=_holdout(args),
            rescale=not args.no_rescale,
            seed=args.seed,
            threads=args.threads,
            device=args.device,
            progress=not args.quiet,
            digits=args.digits,
            checkpoint=args.output,
            resume=bool(args.resume),
            **settings,
        )
    except KeyboardInterrupt:
        saved = Path(args.output or "", CHECKPOINT_FILE)
        if args.output and saved.exists() and saved.stat().st_mtime >= started:
            print(
                f"interrupted; the trained network is saved in {args.output}\n"
                f"hint: run the same command with --resume {args.output} to skip training",
                file=sys.stderr,
            )
            return 130
        raise
    summaries = [result.summary()]
    if result.participant_table:
        summaries.append(result.participant_summary())
    write_output(STDOUT, result.fitted_text + "".join(f"{text}\n" for text in summaries))
    if result.log.stopped == "interrupted":
        print("training was interrupted; the results use the best network so far", file=sys.stderr)
    if args.output:
        from spicedsl.report import write_report

        out = result.save(args.output, overwrite=True)
        write_report(result, data, out / "report.html")
        table = f", {TABLE_FILE}" if result.participant_table else ""
        print(
            printable(f"wrote {out}: fitted.spice{table}, report.json, report.html, network.npz"),
            file=sys.stderr,
        )
    return 0


def _check_output_dir(args: argparse.Namespace, model, overwrite: bool) -> None:
    """Refuse, before any work, an ``-o`` folder that cannot take the results or that
    holds an input."""
    from spicedsl.files import check_output_dir

    if not args.output:
        return
    out = check_output_dir(args.output, overwrite).resolve()
    for given in (args.model, args.data, model.participant_table):
        if given and Path(given).resolve().parent == out:
            raise UsageError(f"{given} is inside the output folder; choose another -o")


def _baseline(args: argparse.Namespace) -> int:
    import json

    from spicedsl.baseline import baseline
    from spicedsl.frontend import load_ir

    model_path = Path(args.model)
    model = load_ir(model_path)
    _check_output_dir(args, model, args.overwrite)
    data = _read_data(args, model)
    settings = {
        name: getattr(args, name) for name in TRAINING_OPTIONS if getattr(args, name) is not None
    }
    result = baseline(
        model_path,
        data,
        hidden=args.hidden,
        embedding=args.embedding,
        validation=args.validation,
        holdout=_holdout(args),
        seed=args.seed,
        threads=args.threads,
        progress=not args.quiet,
        **settings,
    )
    if args.json:
        write_output(STDOUT, json.dumps(result.metrics) + "\n")
    else:
        write_output(STDOUT, result.summary() + "\n")
    if result.log.stopped == "interrupted":
        print("training was interrupted; the results use the best network so far", file=sys.stderr)
    if args.output:
        out = result.save(args.output, overwrite=True)
        print(printable(f"wrote {out}: report.json, network.npz"), file=sys.stderr)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from spicedsl.files import check_output
    from spicedsl.fitted import TABLE_FILE
    from spicedsl.plots import plot_command

    inputs = [*_model_inputs(args.model, args.truth), args.data]
    if args.fitted:
        inputs += [Path(args.fitted, name) for name in ("fitted.spice", TABLE_FILE, "network.npz")]
    check_output(args.output, inputs)
    written = plot_command(
        Path(args.model),
        args.data,
        args.session,
        output=args.output,
        truth=args.truth,
        fitted=args.fitted,
        **_data_options(args),
    )
    if args.output != STDOUT:
        print(printable(f"wrote {written}"), file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from spicedsl.api import evaluate
    from spicedsl.frontend import load_ir

    model_path = Path(args.model)
    data = _read_data(args, load_ir(model_path))
    holdout = _holdout(args)
    scored = holdout if holdout.sessions or holdout.last else None
    metrics = evaluate(model_path, data, args.unknown_participants, scored)
    if args.json:
        write_output(STDOUT, json.dumps(metrics) + "\n")
        return 0
    participants = metrics.pop("participants", {})
    lines = [
        f"{key:14} {value:.6g}" if isinstance(value, float) else f"{key:14} {value}"
        for key, value in metrics.items()
    ]
    if participants:
        lines.append(f"\n{'participant':14} {'nll_per_trial':>13} {'n_trials':>9}")
        for label, own in participants.items():
            lines.append(f"{label:14} {own['nll_per_trial']:13.6g} {own['n_trials']:9d}")
    write_output(STDOUT, "".join(f"{line}\n" for line in lines))
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json

    from spicedsl.api import read_data
    from spicedsl.compare import Interrupted, compare, read_candidates
    from spicedsl.frontend import load_ir

    *models, data_path = args.files
    if not models:
        raise UsageError("compare needs model files and then a data file")
    data = read_data(data_path, *(load_ir(Path(m)) for m in models), **_data_options(args))
    candidates = read_candidates(models, data)
    settings = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    try:
        comparison = compare(
            candidates,
            data,
            folds=args.folds,
            by=args.by,
            seed=args.seed,
            outdir=args.output,
            workers=args.workers,
            cluster=args.cluster,
            progress=not args.quiet,
            validation=args.validation,
            **settings,
        )
    except Interrupted as stop:
        if stop.outdir is None:
            raise
        print(
            f"interrupted; {stop.finished} of {stop.total} fits are saved in {stop.outdir}\n"
            "hint: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(json.dumps(comparison.to_json()))
    else:
        sys.stdout.write(comparison.text())
    if args.output:
        print(
            f"wrote {args.output}: compare.txt, compare.json, compare.html, a folder per model",
            file=sys.stderr,
        )
    return 0


_COMMANDS = {
    "check": _check,
    "fmt": _fmt,
    "compile": _compile,
    "simulate": _simulate,
    "fit": _fit,
    "evaluate": _evaluate,
    "baseline": _baseline,
    "plot": _plot,
    "compare": _compare,
}


if __name__ == "__main__":
    sys.exit(main())
