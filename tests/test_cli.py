"""The ``spicedsl`` command line, run as a subprocess: exit codes, stdout and stderr.

Golden cases: ``tests/cases/bad/NAME.spice`` is checked with ``spicedsl check`` from the
repository root, and ``NAME.expected`` holds ``exit N`` on its first line followed by the
exact stderr. A ``NAME.expected`` without ``NAME.spice`` checks a file that does not
exist. ``pytest --update-golden`` rewrites the expected files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BAD = Path("tests/cases/bad")
EXAMPLES = sorted(p.relative_to(ROOT) for p in (ROOT / "examples").glob("*.spice"))


def spicedsl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def bad_cases() -> list[str]:
    return sorted({p.stem for p in (ROOT / BAD).iterdir() if p.suffix in (".spice", ".expected")})


def test_there_are_enough_bad_cases() -> None:
    assert len(bad_cases()) >= 35


@pytest.mark.parametrize("name", bad_cases())
def test_bad_model_message(name: str, update_golden: bool) -> None:
    result = spicedsl("check", str(BAD / f"{name}.spice"))
    actual = f"exit {result.returncode}\n{result.stderr}"
    expected_file = ROOT / BAD / f"{name}.expected"
    if update_golden:
        expected_file.write_text(actual, encoding="utf-8")
    assert result.returncode in (1, 2)
    assert result.stdout == ""
    assert_no_traceback(result)
    assert actual == expected_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", EXAMPLES, ids=str)
def test_examples_check_ok(path: Path) -> None:
    result = spicedsl("check", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", "")


def test_check_reports_every_file() -> None:
    good, bad = str(EXAMPLES[0]), str(BAD / "duplicate_state.spice")
    result = spicedsl("check", good, bad)
    assert result.returncode == 1
    assert result.stdout == f"{good}: ok\n"
    assert result.stderr.startswith(f"{bad}:4:7: error: duplicate name 'x_value_reward'")


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "usage: spicedsl"),
        (("check",), "error: the following arguments are required: MODEL"),
        (("frobnicate",), "error: argument COMMAND: invalid choice: 'frobnicate'"),
        (("check", "--nonsense", "examples/rescorla_wagner.spice"), "unrecognized arguments"),
        (("fmt",), "error: the following arguments are required: MODEL"),
    ],
    ids=["no command", "check without model", "unknown command", "unknown option", "fmt"],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    result = spicedsl(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert_no_traceback(result)


def test_version_and_help_go_to_stdout() -> None:
    version = spicedsl("--version")
    assert (version.returncode, version.stdout.startswith("spicedsl "), version.stderr) == (
        0,
        True,
        "",
    )
    help_ = spicedsl("check", "--help")
    assert help_.returncode == 0
    assert "usage: spicedsl check" in help_.stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=str)
def test_examples_are_in_canonical_form(path: Path) -> None:
    result = spicedsl("fmt", "--check", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_fmt_prints_canonical_form(tmp_path: Path) -> None:
    messy = tmp_path / "messy.spice"
    messy.write_text(
        "model m   # header\nstate x=0.5\n\n\n\nparam b>0\nlogits=b*(x)\n", encoding="utf-8"
    )
    result = spicedsl("fmt", str(messy))
    assert result.returncode == 0
    assert result.stdout == "model m  # header\nstate x = 0.5\n\nparam b > 0\nlogits = b * x\n"
    checked = spicedsl("fmt", "--check", str(messy))
    assert checked.returncode == 1
    assert checked.stdout == ""
    assert "not in canonical form" in checked.stderr


def test_fmt_of_a_bad_file_reports_the_syntax_error() -> None:
    result = spicedsl("fmt", str(BAD / "missing_equals.spice"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error: unexpected '0.5'; expected '='" in result.stderr
    assert_no_traceback(result)


def test_directory_instead_of_model_file() -> None:
    result = spicedsl("check", "examples")
    assert result.returncode == 1
    assert result.stderr.startswith("examples: error: the model file is a folder, not a file")
    assert_no_traceback(result)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    binary = tmp_path / "binary.spice"
    binary.write_bytes(b"model m\n\xff\xfe\n")
    result = spicedsl("check", str(binary))
    assert result.returncode == 1
    assert f"{binary}:2: error: the model file is not UTF-8 text" in result.stderr
    assert_no_traceback(result)


def test_fmt_check_takes_several_files(tmp_path: Path) -> None:
    messy = tmp_path / "messy.spice"
    messy.write_text("model m\nstate x=0\nparam b = 1\nlogits = b*x\n")
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*.spice"))
    assert spicedsl("fmt", "--check", *examples).returncode == 0
    done = spicedsl("fmt", "--check", *examples, str(messy))
    assert done.returncode == 1
    assert done.stderr == f"{messy}: not in canonical form (run 'spicedsl fmt')\n"
    assert spicedsl("fmt", *examples[:2]).returncode == 2


def test_a_model_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    model = tmp_path / "bom.spice"
    model.write_bytes("\ufeffmodel m\nstate x = 0\nlogits = 2 * y\n".encode())
    result = spicedsl("check", str(model))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"{model}:3:14: error: unknown name 'y'"
    model.write_bytes("\ufeffmodel m\nstate x = 0\nlogits = 2 * x\n".encode())
    assert spicedsl("check", str(model)).returncode == 0
    assert spicedsl("fmt", "--check", str(model)).returncode == 0


def stray_choice_file(folder: Path) -> Path:
    """Two-armed data with one stray choice 7 on line 42."""
    rows = [f"s{i // 20},{i % 2 if i != 40 else 7},{i % 3 % 2}" for i in range(100)]
    data = folder / "data.csv"
    data.write_text("session,choice,reward\n" + "\n".join(rows) + "\n")
    return data


def test_a_stray_choice_needs_the_number_of_actions_on_the_command_line(tmp_path: Path) -> None:
    data = stray_choice_file(tmp_path)
    refused = spicedsl("evaluate", "examples/q_learning.spice", str(data))
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"{data}:42: column 'choice': error: choice 7 makes 8 actions, but choices 2..6 never "
        "occur",
        "hint: if the task has 8 actions, say so with 'actions 8' in the model or --actions 8; "
        "otherwise fix this row",
    ]
    accepted = spicedsl("evaluate", "examples/q_learning.spice", str(data), "--actions", "8")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stderr == ""


@pytest.mark.parametrize(
    ("model", "actions", "message"),
    [
        ("examples/q_learning.spice", "1", "--actions must be between 2 and 1024"),
        ("two.spice", "3", "the model has 2 actions, not 3"),
    ],
)
def test_a_wrong_number_of_actions_is_a_usage_error(
    tmp_path: Path, model: str, actions: str, message: str
) -> None:
    two = tmp_path / "two.spice"
    two.write_text((ROOT / "examples/q_learning.spice").read_text() + "actions 2\n")
    model_path = str(two) if model == "two.spice" else model
    result = spicedsl(
        "evaluate", model_path, str(stray_choice_file(tmp_path)), "--actions", actions
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert_no_traceback(result)


def test_an_action_nobody_chooses_is_noted_with_the_counts(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    rows = [f"s{i // 20},{2 * (i % 2)},{i % 3 % 2}" for i in range(100)]
    data.write_text("session,choice,reward\n" + "\n".join(rows) + "\n")
    result = spicedsl("evaluate", "examples/q_learning.spice", str(data))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"note: {data}: 3 actions are inferred from the choices, but choice 1 never occurs "
        "(rows per choice: 0: 50, 1: 0, 2: 50)\n"
    )
