"""Outputs never replace an input or what is not a regular file; untrusted input files
are read within bounds of time and memory; no traceback for any of it."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spicedsl import api
from spicedsl.errors import FileError, SpiceError
from spicedsl.files import write_atomic
from spicedsl.runtime.weights import save_weights

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
Q_LEARNING = EXAMPLES / "q_learning.spice"
DATA = EXAMPLES / "data" / "q_learning.csv"
LEARNABLE = EXAMPLES / "learning_rate.spice"

TABLE_MODEL = """\
model rw
state v = 0.5
control r = data.reward
module learn_v updates v when chosen
    learn_v = v + alpha * (r - v)
param alpha in (0, 1) per participant
param beta > 0 = 3
logits = beta * v
participants from "table.csv"
"""


def spicedsl(*args: str | Path, cwd: Path = ROOT, **options) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter; fail the test if it takes a minute."""
    if "stdout" not in options:
        options["capture_output"] = True
    command = [sys.executable, "-m", "spicedsl.cli", *map(str, args)]
    return subprocess.run(command, cwd=cwd, text=True, timeout=60, **options)


def assert_clear_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert text in result.stderr


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with a model, its data, a model with a participant table and the table."""
    shutil.copy(Q_LEARNING, tmp_path / "m.spice")
    shutil.copy(DATA, tmp_path / "d.csv")
    (tmp_path / "t.spice").write_text(TABLE_MODEL)
    (tmp_path / "table.csv").write_text("participant,alpha\n1,0.3\n2,0.6\n")
    return tmp_path


# -- outputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, replaced",
    [
        (["compile", "m.spice", "-o", "m.spice"], "m.spice"),
        (["simulate", "m.spice", "-o", "m.spice"], "m.spice"),
        (["simulate", "m.spice", "-o", "x.csv", "--latents", "m.spice"], "m.spice"),
        (["simulate", "t.spice", "-o", "table.csv"], "table.csv"),
        (
            [
                "simulate",
                "m.spice",
                "-o",
                "x.csv",
                "--latents",
                "table.csv",
                "--params",
                "table.csv",
            ],
            "table.csv",
        ),
        (["plot", "m.spice", "d.csv", "--session", "1", "-o", "d.csv"], "d.csv"),
        (["compile", "m.spice", "-o", "hard_link.spice"], "m.spice"),
    ],
    ids=["compile", "simulate", "latents", "table", "params", "plot", "hard link"],
)
def test_an_output_that_is_an_input_is_refused(work: Path, args: list[str], replaced: str) -> None:
    os.link(work / "m.spice", work / "hard_link.spice")
    before = (work / replaced).read_bytes()
    result = spicedsl(*args, cwd=work)
    assert_clear_error(result, 2, "writing it would replace the input")
    assert (work / replaced).read_bytes() == before


def test_a_symbolic_link_is_never_replaced(work: Path) -> None:
    (work / "target.csv").write_text("keep me\n")
    (work / "link.csv").symlink_to("target.csv")
    result = spicedsl("simulate", "m.spice", "-o", "link.csv", cwd=work)
    assert_clear_error(result, 1, "cannot write 'link.csv': it is a symbolic link")
    assert (work / "link.csv").is_symlink()
    assert (work / "target.csv").read_text() == "keep me\n"


def test_a_fifo_is_never_replaced(work: Path) -> None:
    os.mkfifo(work / "fifo")
    result = spicedsl("compile", "m.spice", "-o", "fifo", cwd=work)
    assert_clear_error(result, 1, "cannot write 'fifo': it is a device, a pipe or a socket")
    assert (work / "fifo").is_fifo()


def test_a_device_is_never_replaced(work: Path) -> None:
    # A device node of its own: a broken run must not replace one of the machine's.
    try:
        os.mknod(work / "null", 0o666 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs privileges")
    result = spicedsl("simulate", "m.spice", "-o", "null", cwd=work)
    assert_clear_error(result, 1, "it is a device, a pipe or a socket")
    assert (work / "null").is_char_device()


def test_dash_writes_to_stdout(work: Path) -> None:
    simulated = spicedsl(
        "simulate", "m.spice", "--sessions", "2", "--trials", "3", "-o", "-", cwd=work
    )
    assert simulated.returncode == 0, simulated.stderr
    assert simulated.stdout.splitlines()[0] == "session,participant,choice,reward"
    assert len(simulated.stdout.splitlines()) == 7
    assert "to stdout" in simulated.stderr
    compiled = spicedsl("compile", "m.spice", "-o", "-", cwd=work)
    assert compiled.returncode == 0
    assert compiled.stdout == spicedsl("compile", "m.spice", cwd=work).stdout
    assert not (work / "-").exists()


@pytest.mark.parametrize(
    "target, message",
    [
        ("m.spice/out.py", "cannot write 'm.spice/out.py'"),
        ("missing/out.py", "folder 'missing' does not exist"),
        ("/proc/spicedsl-out.py", "cannot write '/proc/spicedsl-out.py'"),
    ],
    ids=["under a file", "missing folder", "unwritable folder"],
)
def test_an_unwritable_output_is_a_clear_error(work: Path, target: str, message: str) -> None:
    assert_clear_error(spicedsl("compile", "m.spice", "-o", target, cwd=work), 1, message)


def test_a_write_that_fails_names_the_path() -> None:
    with pytest.raises(SpiceError, match="cannot write '/proc/spicedsl-out.txt'"):
        write_atomic("/proc/spicedsl-out.txt", "x")


def test_fit_refuses_an_unwritable_outdir_before_fitting(work: Path) -> None:
    result = spicedsl("fit", LEARNABLE, "d.csv", "-o", "m.spice/results", "-q", cwd=work)
    assert_clear_error(result, 1, "cannot create output folder 'm.spice/results'")
    assert result.stdout == ""


def test_a_full_stdout_is_a_clear_error(work: Path) -> None:
    with open("/dev/full", "w") as full:
        result = spicedsl("compile", "m.spice", cwd=work, stdout=full, stderr=subprocess.PIPE)
    assert_clear_error(result, 1, "error: cannot write to stdout: No space left on device")


def test_a_closed_stdout_ends_quietly(work: Path) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        result = spicedsl("compile", "m.spice", cwd=work, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


# -- the command line ----------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", str(10**23), "x"])
@pytest.mark.parametrize("command", ["simulate", "fit"])
def test_seeds_out_of_range(work: Path, command: str, seed: str) -> None:
    args = ["m.spice", "-o", "x.csv"] if command == "simulate" else [LEARNABLE, "d.csv"]
    result = spicedsl(command, *args, "--seed", seed, cwd=work)
    assert_clear_error(result, 2, "the seed must be a whole number from 0 to 4294967295")


@pytest.mark.parametrize("sep", ["TAB", ";;", ""])
def test_separators_that_are_not_one_character(work: Path, sep: str) -> None:
    result = spicedsl("evaluate", "m.spice", "d.csv", "--sep", sep, cwd=work)
    assert_clear_error(result, 2, "the separator must be one character")


def test_any_single_character_separates(work: Path) -> None:
    (work / "d.txt").write_text((work / "d.csv").read_text().replace(",", "|"))
    result = spicedsl("evaluate", "m.spice", "d.txt", "--sep", "|", cwd=work)
    assert result.returncode == 0, result.stderr


def test_a_simulation_too_large_for_memory_is_refused(work: Path) -> None:
    args = ["m.spice", "-o", "x.csv", "--sessions", "100000000", "--trials", "100000"]
    result = spicedsl("simulate", *args, cwd=work)
    assert_clear_error(result, 2, "of memory, more than the limit of 4 GB")
    assert not (work / "x.csv").exists()


# -- input files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "/dev/stdin"], "/dev/stdin: error: the model file is not a regular file"),
        (["evaluate", "m.spice", "/dev/full"], "/dev/full: error: the data file is not a regular"),
        (["evaluate", "m.spice", "fifo"], "fifo: error: the data file is not a regular file"),
        (["check", "zero.spice"], "/dev/zero: error: the participant table is not a regular file"),
        (
            ["simulate", "t.spice", "-o", "x.csv", "--params", "/dev/full"],
            "/dev/full: error: the participant table is not a regular file",
        ),
    ],
    ids=["model", "data", "fifo", "table", "params"],
)
def test_only_regular_files_are_read(work: Path, args: list[str], message: str) -> None:
    os.mkfifo(work / "fifo")
    (work / "zero.spice").write_text(TABLE_MODEL.replace("table.csv", "/dev/zero"))
    result = spicedsl(*args, cwd=work, stdin=subprocess.PIPE)
    assert_clear_error(result, 1, message)


def test_model_files_and_tables_are_at_most_1_mb(work: Path) -> None:
    params = "".join(f"param p{i} = 1\n" for i in range(70_000))
    (work / "big.spice").write_text(Q_LEARNING.read_text() + params)
    rows = "".join(f"{i},0.5\n" for i in range(3, 120_000))
    (work / "table.csv").write_text("participant,alpha\n1,0.3\n2,0.6\n" + rows)
    result = spicedsl("check", "big.spice", "t.spice", cwd=work)
    assert_clear_error(result, 1, "big.spice: error: the model file is larger than 1 MB")
    assert "table.csv: error: the participant table is larger than 1 MB" in result.stderr


def test_control_characters_in_messages_are_escaped(work: Path) -> None:
    name = "bad\x1b[2J.spice"
    (work / name).write_text("model m\nstate x = 0\nlogits = x + y  # \x1b]0;title\x07\n")
    result = spicedsl("check", name, cwd=work)
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert result.stderr.splitlines() == [
        "bad\\x1b[2J.spice:3:14: error: unknown name 'y'",
        "    logits = x + y  # \\x1b]0;title\\x07",
        "                 ^",
    ]


# -- network weights -----------------------------------------------------------------


def _weights(tmp_path: Path, **changes: np.ndarray | None) -> Path:
    """A network.npz of the learnable example, with arrays replaced (None: removed)."""
    net = api.load_model(LEARNABLE)
    arrays = {key: value.numpy() for key, value in net.state_dict().items()}
    arrays.update(changes)
    path = tmp_path / "network.npz"
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def _archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "network.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _header_only(shape: tuple[int, ...]) -> bytes:
    """An .npy header of float32 values of ``shape``, and 32 bytes of data."""
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(32)


# The read-out weights of the example's first module: their length is the hidden size.
OUT_WEIGHT = "nets.x_learning_rate_reward.out_weight"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _weights(p, **{OUT_WEIGHT: np.array(["a"] * 8)}), "holds <U1 values"),
        (lambda p: _weights(p, **{OUT_WEIGHT: np.zeros(0, np.float32)}), "hidden size must be"),
        (lambda p: _weights(p, **{OUT_WEIGHT: np.full(8, np.nan, np.float32)}), "not finite"),
        (lambda p: _weights(p, **{OUT_WEIGHT: None}), "is missing"),
        (lambda p: _archive(p, {"readme.txt": b"hello"}), "'readme.txt' is not an .npy array"),
        (lambda p: _archive(p, {OUT_WEIGHT + ".npy": b"\x93NUMPY"}), "is not a valid .npy"),
        (lambda p: _archive(p, {}), "is missing"),
        (lambda p: _empty_file(p / "network.npz"), "is not an .npz archive"),
        (
            # A terabyte, by the header of a 400-byte member: refused before reading it.
            lambda p: _archive(p, {OUT_WEIGHT + ".npy": _header_only((10**12,))}),
            "does not match its header",
        ),
        (
            lambda p: _archive(p, {OUT_WEIGHT + ".npy": _npy(np.zeros(2000, np.float32))}),
            "hidden size must be at most 1024",
        ),
    ],
    ids=[
        "strings",
        "no hidden units",
        "nan",
        "missing array",
        "not npy",
        "broken npy",
        "empty archive",
        "empty file",
        "huge shape",
        "huge hidden size",
    ],
)
def test_crafted_network_weights_are_refused(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(SpiceError, match=re.escape(message)):
        api.simulate(LEARNABLE, 2, 3, weights=path)


def test_weights_of_a_fit_load_back(tmp_path: Path) -> None:
    net = api.load_model(LEARNABLE, hidden_size=5)
    save_weights(net, tmp_path / "network.npz")
    dataset, _ = api.simulate(LEARNABLE, 2, 3, weights=tmp_path / "network.npz")
    assert dataset.n_trials == 6


def test_crafted_weights_through_the_cli(work: Path) -> None:
    _weights(work, **{OUT_WEIGHT: np.full(8, np.inf, np.float32)})
    result = spicedsl("simulate", LEARNABLE, "--network", "network.npz", "-o", "x.csv", cwd=work)
    assert_clear_error(result, 1, "network.npz: error: the array")
    assert not (work / "x.csv").exists()


def test_an_unreadable_weights_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="the network weights file does not exist"):
        api.simulate(LEARNABLE, 2, 3, weights=tmp_path / "missing.npz")
