"""The built wheel works on its own: grammar and templates ship inside the package."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("spicedsl-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    # check needs only lark, compile also sympy and jinja2: no torch download here.
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True)
    subprocess.run([*pip, "lark", "sympy", "jinja2"], check=True, capture_output=True)
    spicedsl = env_dir / "bin" / "spicedsl"
    model = ROOT / "examples" / "learning_rate.spice"
    checked = subprocess.run(
        [str(spicedsl), "check", str(model)], capture_output=True, text=True, cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stderr
    compiled = subprocess.run(
        [str(spicedsl), "compile", str(model)], capture_output=True, text=True, cwd=tmp_path
    )
    assert compiled.returncode == 0, compiled.stderr
    assert "class LearningRateModel(BaseRNN):" in compiled.stdout
    installed = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-c",
            "import spicedsl, pathlib; print(pathlib.Path(spicedsl.__file__).parent)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert (Path(installed) / "grammars" / "spice.lark").is_file()
    assert (Path(installed) / "templates" / "model.py.j2").is_file()
