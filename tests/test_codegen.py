"""Tests of code generation (spicedsl.codegen) and of the runtime network it targets."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from reference_agents import QLearning

from spicedsl import __version__
from spicedsl.api import compile_model, load_model
from spicedsl.codegen.instantiate import network_class
from spicedsl.codegen.torch_printer import local_names
from spicedsl.discovery.candidates import record_modules
from spicedsl.frontend import load_ir
from spicedsl.runtime.batch import IGNORE, Batch, make_batch
from spicedsl.runtime.data import Dataset
from spicedsl.semantics import sympy_functions

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOOD = ROOT / "tests" / "cases" / "good"
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.spice"))

#: Model names that are Python keywords, builtins, or names of the generated method.
KEYWORD_MODEL = """\
model lambda "import os; os.system('echo injected')"
# \"\"\" import os
state class = 0.5
state self = 0
state new_state = 0
control data = data.reward
control chosen = class  # import sys
control torch = data.choice
module import updates class when chosen
    import = class + lambda * (data - class)
module __import__ updates class when not chosen
    learn(chosen, data)
module None updates self when data > 0.5
    learn(torch)
module True updates new_state when all
    True = new_state + __debug__ * exp(class)
param lambda in (0, 1) = 0.3
param __debug__ = 0.1
param __class__ > 0
param float init 2
logits = __class__ * class + float * self + new_state
"""


def loss_of(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the predicted next choices; padding never counts."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1), ignore_index=IGNORE
    )


def random_dataset(
    rng: np.random.Generator, lengths: list[int], n_actions: int, n_participants: int = 1
) -> Dataset:
    """Sessions of the given lengths with random choices and rewards, padded as loaded."""
    n_sessions, n_trials = len(lengths), max(lengths)
    padding = np.arange(n_trials) >= np.array(lengths)[:, None]
    choices = rng.integers(0, n_actions, size=(n_sessions, n_trials))
    choices[padding] = -1
    reward = rng.random((n_sessions, n_trials)).astype(np.float32)
    reward[padding] = 0
    return Dataset(
        choices=choices,
        reward=reward,
        rewards=None,
        inputs={},
        lengths=np.array(lengths, dtype=np.int64),
        session_ids=tuple(f"s{i}" for i in range(n_sessions)),
        participant_index=np.arange(n_sessions) % n_participants,
        participant_ids=tuple(f"p{i}" for i in range(n_participants)),
        n_actions=n_actions,
        choice_base=0,
        reward_range=None,
    )


# --- golden files and the shape of generated code ------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_generated_code_matches_golden_file(name: str, update_golden: bool) -> None:
    code = compile_model(EXAMPLES / f"{name}.spice")
    golden = GOOD / f"{name}.py"
    if update_golden:
        GOOD.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(code.encode())
    assert golden.read_bytes() == code.encode()


def test_every_golden_file_belongs_to_an_example() -> None:
    assert sorted(p.stem for p in GOOD.glob("*.py")) == EXAMPLE_NAMES


def test_generation_is_deterministic_across_processes() -> None:
    script = (
        "import json, sys\n"
        "from spicedsl.api import compile_model\n"
        "print(json.dumps([compile_model(p) for p in sys.argv[1:]]))\n"
    )
    paths = [str(EXAMPLES / f"{name}.spice") for name in EXAMPLE_NAMES]
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run(
            [sys.executable, "-c", script, *paths],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1] == [compile_model(Path(p)) for p in paths]


def generated_sources() -> dict[str, str]:
    """Generated code of every example and of the keyword model."""
    sources = {name: compile_model(EXAMPLES / f"{name}.spice") for name in EXAMPLE_NAMES}
    sources["keywords"] = compile_model(KEYWORD_MODEL)
    return sources


def test_generated_code_imports_only_torch_and_the_runtime() -> None:
    for name, code in generated_sources().items():
        imported = set()
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert imported, name
        assert all(m == "torch" or m.startswith("spicedsl.runtime.") for m in imported), name


def test_generated_code_passes_ruff(tmp_path: Path) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    for name, code in generated_sources().items():
        (tmp_path / f"{name}.py").write_text(code)
    # Long expression lines are allowed; the keyword model's names are not PEP 8 (N).
    options = ["--isolated", "--no-cache", "--target-version", "py310", "--ignore", "E501"]
    options += ["--select", "E,W,F,I,B,UP,SIM"]
    options += ["--config", "lint.isort.known-first-party = ['spicedsl']"]
    done = subprocess.run([ruff, "check", *options, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_source_lines_are_comments_above_their_statements() -> None:
    code = compile_model(EXAMPLES / "learning_rate.spice")
    lines = code.splitlines()
    model_lines = (EXAMPLES / "learning_rate.spice").read_text().splitlines()
    start = lines.index("    def update(self, state, data, chosen):")
    comments = [i for i in range(start, len(lines)) if lines[i].strip().startswith("#")]
    assert len(comments) == 7
    for i in comments:
        number = int(lines[i].rsplit(":", 1)[1])
        first_word = model_lines[number - 1].split()[0]
        statement = lines[i + 1].strip()
        if first_word == "module":
            target = model_lines[number - 1].split()[3]
            assert statement.startswith(f"{target} = ")
        elif first_word == "logits":
            assert statement.startswith("return ")
        else:  # control or param: the statement assigns the declared name
            assert statement.startswith(f"{model_lines[number - 1].split()[1]} = ")


# --- every example runs --------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_gradients_reach_every_learnable_part(name: str) -> None:
    torch.manual_seed(0)
    data = random_dataset(np.random.default_rng(0), [9, 3, 6, 2, 5], n_actions=3, n_participants=2)
    batch = make_batch(data)
    net = load_model(EXAMPLES / f"{name}.spice", n_actions=3, n_participants=2)
    net.train()
    logits = net(batch.trials, batch.chosen, batch.participants)
    assert logits.shape == (9, 5, 3)
    loss = loss_of(logits, batch)
    assert torch.isfinite(loss)
    parameters = dict(net.named_parameters())
    learnable = [p for p, spec in net.params.items() if not spec.fixed]
    assert set(net.nets) == set(net.module_specs)
    assert {f"raw_params.{p}" for p in learnable} <= set(parameters)
    if not parameters:
        assert load_ir(EXAMPLES / f"{name}.spice").is_generative  # nothing to learn
        return
    loss.backward()
    for parameter_name, parameter in parameters.items():
        assert parameter.grad is not None, parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_padded_trials_do_not_change_the_loss(name: str) -> None:
    torch.manual_seed(0)
    lengths = [8, 2, 5, 7]
    batch = make_batch(random_dataset(np.random.default_rng(1), lengths, n_actions=2))
    net = load_model(EXAMPLES / f"{name}.spice", n_actions=2, n_participants=4).eval()
    with torch.no_grad():
        logits = net(batch.trials, batch.chosen, batch.participants)
        rng = np.random.default_rng(2)
        trials = [{k: v.clone() for k, v in trial.items()} for trial in batch.trials]
        chosen = batch.chosen.clone()
        for session, length in enumerate(lengths):
            for t in range(length, len(trials)):
                trials[t]["reward"][session] = float(rng.random())
                chosen[t, session] = torch.arange(2) == int(rng.integers(2))
        altered = Batch(trials, chosen, batch.targets, batch.participants)
        changed = net(altered.trials, altered.chosen, altered.participants)
    assert not torch.equal(changed, logits)  # the padding was really changed...
    for session, length in enumerate(lengths):  # ...but no real trial's prediction
        assert torch.equal(changed[:length, session], logits[:length, session])
    assert torch.equal(loss_of(changed, altered), loss_of(logits, batch))


def test_training_measures_how_far_module_values_leave_the_range() -> None:
    batch = make_batch(random_dataset(np.random.default_rng(4), [10, 10], n_actions=2))
    net = load_model(EXAMPLES / "rescorla_wagner.spice", n_actions=2).train()
    with torch.no_grad():
        for module in net.nets.values():
            module.out_weight.zero_()
            module.out_bias.fill_(0.25)
    # Every value gains 0.25 a trial (one of its two modules updates it), from 0.5: it
    # stays within 10 for 38 trials.
    net(batch.trials, batch.chosen, batch.participants)
    assert net.beyond_range.tolist() == [0.0]
    net(batch.trials * 6, batch.chosen.repeat(6, 1, 1), batch.participants)
    assert net.beyond_range.item() > 0
    net.eval()
    net(batch.trials, batch.chosen, batch.participants)
    assert net.beyond_range is None


def test_recording_keeps_only_the_entries_of_a_chosen_filter_with_a_condition() -> None:
    text = (
        "model m\nstate x = 0.5\ncontrol c_reward = data.reward\n"
        "module gain updates x when chosen and c_reward > 0.5\n    learn(c_reward)\n"
        "param b > 0\nlogits = b * x\n"
    )
    dataset = random_dataset(np.random.default_rng(3), [20, 20, 20], n_actions=3)
    recorded = record_modules(load_model(text, n_actions=3), make_batch(dataset))["gain"]
    assert len(recorded["before"]) == int((dataset.reward > 0.5).sum())
    assert (recorded["inputs"][:, 0] > 0.5).all()


def test_stepping_through_trials_gives_what_forward_gives() -> None:
    torch.manual_seed(0)
    batch = make_batch(random_dataset(np.random.default_rng(3), [6, 4, 5], 2, n_participants=2))
    net = load_model(EXAMPLES / "individual_differences.spice", n_participants=2).eval()
    with torch.no_grad():
        expected = net(batch.trials, batch.chosen, batch.participants)
        state = net.initial_state(3)
        with net.running(batch.participants):
            for t, data in enumerate(batch.trials):
                logits = net.trial_logits(state, data, 3)
                torch.testing.assert_close(logits, expected[t], rtol=0, atol=0)
                present = batch.chosen[t].any(-1, keepdim=True)
                updated = net.update(state, data, batch.chosen[t])
                state = {k: torch.where(present, v, state[k]) for k, v in updated.items()}


def test_params_outside_forward_are_current() -> None:
    net = load_model(EXAMPLES / "learning_rate.spice")
    batch = make_batch(random_dataset(np.random.default_rng(4), [5, 3], 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    loss_of(net(batch.trials, batch.chosen, batch.participants), batch).backward()
    before = float(net.param("beta_value").detach())
    optimizer.step()
    assert float(net.param("beta_value").detach()) != before


# --- numerics ------------------------------------------------------------------------


@pytest.mark.parametrize("n_actions", [2, 4])
def test_q_learning_matches_the_numpy_reference(n_actions: int) -> None:
    rng = np.random.default_rng(n_actions)
    lengths = rng.integers(2, 80, size=12).tolist()
    data = random_dataset(rng, lengths, n_actions)
    net = load_model(EXAMPLES / "q_learning.spice", n_actions=n_actions)
    spec = net.params
    agent = QLearning(
        alpha=spec["alpha"].value,
        forget=spec["forget"].value,
        beta=spec["beta"].value,
        initial=net.states["x_value_reward"],
    )
    batch = make_batch(data)
    with torch.no_grad():
        logits = net(batch.trials, batch.chosen, batch.participants)
    ours = torch.softmax(logits, dim=-1).numpy().transpose(1, 0, 2)
    expected = agent.next_choice_probabilities(data.choices, data.reward, n_actions)
    # Our logits of trial t + 1 come from trials 1..t, as the reference's entry t does.
    real = data.choices[:, 1:] >= 0
    np.testing.assert_allclose(ours[:, 1:][real], expected[:, :-1][real], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[:, 0], 1 / n_actions, rtol=0, atol=1e-12)


EXPRESSIONS = [
    "x + exp(1) + log(2) + sqrt(2)",
    "sigmoid(2) * x + tanh(1) - abs(-3)",
    "clip(x, 0.2, 0.6) + clip(1, 0, 2)",
    "clip(x + r, r, 1) + clip(0.5, r, 1)",
    "max(x, r) + min(1, x) + max(r, 0.2) + min(x, 0.3)",
    "sqrt(x) + 1 / sqrt(r + 1) + 1 / (x + 1)",
    "x^2 - 2^x + x^(1/3) + (r + 1)^-2",
    "abs(r - x) / 3 + exp(-x) * log(r + 0.1)",
    "sigmoid(x - r) + tanh(3 * r)",
    "1e20 * (x - r) + 123456789012345678901234 / 7 * x",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expressions_compute_what_they_say(expression: str) -> None:
    text = (
        "model m\nstate x = 0.4\ncontrol r = data.reward\n"
        f"module m updates x when all\n    m = {expression}\nlogits = x\n"
    )
    x, r = sympy.symbols("x r", real=True)  # the symbols of the model's names
    exact = load_ir(text).modules[0].expr
    exact = exact.replace(sympy_functions.clip, lambda a, lo, hi: sympy.Min(sympy.Max(a, lo), hi))
    exact = exact.replace(sympy_functions.sigmoid, lambda a: 1 / (1 + sympy.exp(-a)))
    reference = sympy.lambdify([x, r], exact, "numpy")
    data = random_dataset(np.random.default_rng(5), [2, 2, 2, 2], 2)
    batch = make_batch(data)
    with torch.no_grad():
        _, states = load_model(text)(
            batch.trials, batch.chosen, batch.participants, return_states=True
        )
    expected = reference(np.float64(0.4), data.reward[:, 0].astype(np.float64))
    np.testing.assert_allclose(states["x"][0, :, 0].numpy(), expected, rtol=1e-5)


# --- the seed tutorial's network -----------------------------------------------------


def test_learning_rate_model_has_the_structure_of_the_seed() -> None:
    net = load_model(EXAMPLES / "learning_rate.spice")
    assert net.states == {"x_value_reward": 0.5, "x_learning_rate_reward": 0.0}
    lr, forget = (
        net.module_specs["x_learning_rate_reward"],
        net.module_specs["x_value_reward_not_chosen"],
    )
    assert set(net.module_specs) == {"x_learning_rate_reward", "x_value_reward_not_chosen"}
    assert (lr.target, lr.inputs, lr.filter, lr.activation) == (
        "x_learning_rate_reward",
        ("c_reward", "c_value_reward"),
        "chosen",
        "sigmoid",
    )
    assert (forget.target, forget.inputs, forget.filter, forget.activation) == (
        "x_value_reward",
        (),
        "not_chosen",
        None,
    )
    assert net.nets["x_learning_rate_reward"].weight.shape[0] == 3  # value + 2 inputs
    assert net.nets["x_value_reward_not_chosen"].weight.shape[0] == 1
    assert [p for p, spec in net.params.items() if not spec.fixed] == ["beta_value"]
    assert [p for p, _ in net.named_parameters() if p.startswith("raw_params")] == [
        "raw_params.beta_value"
    ]


def test_learning_rate_model_computes_the_seed_equations() -> None:
    torch.manual_seed(0)
    data = random_dataset(np.random.default_rng(6), [7, 4, 6], 2)
    batch = make_batch(data)
    net = load_model(EXAMPLES / "learning_rate.spice").eval()
    net.start_recording()
    with torch.no_grad():
        logits, states = net(batch.trials, batch.chosen, batch.participants, return_states=True)
    recordings = net.stop_recording()
    value, rate = states["x_value_reward"], states["x_learning_rate_reward"]
    before_value = torch.cat([torch.full_like(value[:1], 0.5), value[:-1]])
    before_rate = torch.cat([torch.zeros_like(rate[:1]), rate[:-1]])
    chosen = batch.chosen
    reward = torch.stack([trial["reward"] for trial in batch.trials]).expand_as(value)
    # The hard-coded reward-prediction error, with this trial's new learning rate.
    rpe = before_value + rate * (reward - before_value)
    torch.testing.assert_close(value[chosen], rpe[chosen])
    # The learning rate changes only for the chosen action, and stays in (0, 1).
    assert torch.equal(rate[~chosen], before_rate[~chosen])
    assert bool(((rate[chosen] > 0) & (rate[chosen] < 1)).all())
    # Its network reads (c_reward, c_value_reward): the reward and the start-of-trial value.
    record = recordings["x_learning_rate_reward"]
    inputs = torch.cat(record.inputs)
    expected_inputs = torch.stack([reward[chosen], before_value[chosen]], dim=-1)
    torch.testing.assert_close(inputs, expected_inputs)
    torch.testing.assert_close(torch.cat(record.after), rate[chosen])
    forgetting = recordings["x_value_reward_not_chosen"]
    # Padding has no choice: it updates nothing, and nothing of it is recorded.
    not_chosen = ~chosen & chosen.any(-1, keepdim=True)
    torch.testing.assert_close(torch.cat(forgetting.before), before_value[not_chosen])
    torch.testing.assert_close(torch.cat(forgetting.after), value[not_chosen])
    assert torch.cat(forgetting.inputs).shape == (int(not_chosen.sum()), 0)
    # Each trial's logits come from the values at its start.
    torch.testing.assert_close(logits, net.param("beta_value") * before_value)


# --- names and text from the model file ----------------------------------------------


def test_local_names_avoid_keywords_and_the_method_names() -> None:
    names = ["lambda", "class", "self", "state", "data", "chosen", "torch", "logits"]
    names += ["import", "__import__", "new_state", "__debug__", "None", "self_", "x"]
    locals_ = local_names(names)
    assert len(set(locals_.values())) == len(names)
    for local in locals_.values():
        assert local.isidentifier()
        assert local not in {"self", "state", "data", "chosen", "torch", "logits", "new_state"}
        compile(f"def f():\n    {local} = 1\n    return {local}\n", "<test>", "exec")
    assert locals_["x"] == "x" and locals_["self_"] == "self_"


def test_keyword_names_compile_and_run() -> None:
    net = load_model(KEYWORD_MODEL, n_actions=2)
    assert type(net).__name__ == "LambdaModel"
    assert set(net.states) == {"class", "self", "new_state"}
    batch = make_batch(random_dataset(np.random.default_rng(7), [5, 3, 4], 2))
    logits, states = net(batch.trials, batch.chosen, batch.participants, return_states=True)
    loss = loss_of(logits, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in net.parameters())
    # 'import' is the hard-coded Rescorla-Wagner update of the chosen 'class' entry.
    reward = batch.trials[0]["reward"].expand(3, 2)
    chosen = batch.chosen[0]
    expected = 0.5 + 0.3 * (reward[chosen] - 0.5)
    torch.testing.assert_close(states["class"][0][chosen], expected)


def hostile_file_name() -> str:
    return "evil\n\"\"\"\nimport os; os.system('x')  # \r'\\\x0c\u2028\x85.spice"


def test_hostile_file_name_cannot_inject_code(tmp_path: Path) -> None:
    name = hostile_file_name()
    path = tmp_path / name
    path.write_text((EXAMPLES / "forgetting.spice").read_text())
    code = compile_model(path)
    assert name[:-6] not in code
    assert "import os" not in code.replace(repr(name)[1:-1], "")
    tree = ast.parse(code)
    assert [type(node) for node in tree.body] == [ast.Expr, ast.ImportFrom, ast.ClassDef]
    assert len(code.splitlines()) == len(compile_model(EXAMPLES / "forgetting.spice").splitlines())
    net = network_class(load_ir(path))(2)
    assert set(net.module_specs) == {"x_value_reward_chosen", "x_value_reward_not_chosen"}


def foreign_text(code: str, source_name: str) -> list[str]:
    """Tokens of generated code that could carry model text besides names and numbers.

    Strings must be identifiers (or the fixed docstring), and comments must be the
    template's own or ``# <escaped source name>:<line>``.
    """
    source = re.escape(repr(source_name)[1:-1])
    comments = [
        rf"# Generated by spicedsl {re.escape(__version__)} from {source}\. "
        r"Do not edit: edit the model file\.",
        r"# The SINDy setup: each learnable module's target, trial filter and library\.",
        rf"# {source}:\d+",
    ]
    found = []
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.STRING:
            value = ast.literal_eval(token.string)
            docstring = re.fullmatch(r"The \w+ model as a torch network\.", value)
            if not (value.isidentifier() or docstring):
                found.append(token.string)
        elif token.type == tokenize.COMMENT:
            if not any(re.fullmatch(pattern, token.string) for pattern in comments):
                found.append(token.string)
        elif token.type == tokenize.ERRORTOKEN:
            found.append(token.string)
    return found


def test_only_names_and_numbers_of_the_model_reach_generated_code(tmp_path: Path) -> None:
    for name in EXAMPLE_NAMES:
        code = compile_model(EXAMPLES / f"{name}.spice")
        assert foreign_text(code, f"{name}.spice") == [], name
    code = compile_model(KEYWORD_MODEL)
    assert foreign_text(code, "<model>") == []
    assert "echo" not in code and "import sys" not in code and code.count('"""') == 2
    path = tmp_path / hostile_file_name()
    path.write_text(KEYWORD_MODEL)
    assert foreign_text(compile_model(path), hostile_file_name()) == []


# --- the compiler stays light --------------------------------------------------------


def test_compile_does_not_import_torch(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from spicedsl.cli import main\n"
        "code = main(['compile', sys.argv[1], '-o', sys.argv[2]])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    output = tmp_path / "model.py"
    subprocess.run(
        [sys.executable, "-c", script, str(EXAMPLES / "learning_rate.spice"), str(output)],
        check=True,
        capture_output=True,
    )
    assert output.read_text() == compile_model(EXAMPLES / "learning_rate.spice")
