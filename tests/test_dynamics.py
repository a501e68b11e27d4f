"""Unstable discovered equations: flagged in the report, the fitted model and a note."""

from __future__ import annotations

from pathlib import Path

import pytest

from spicedsl.discovery.equation import DiscoveredEquation
from spicedsl.dynamics import (
    UnstableEquation,
    flag_unstable_equations,
    unstable_equations,
    unstable_report,
)
from spicedsl.fitted import TABLE_FILE, fitted_program
from spicedsl.frontend import load_ir
from spicedsl.printer import format_program
from spicedsl.syntax.parser import parse

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
X = (("x", 1),)
R = (("r", 1),)


def shared(b: float, *more) -> dict[str, DiscoveredEquation]:
    return {"m": DiscoveredEquation("m", "x", ((0.1, ()), (b, X), *more), 50)}


def test_a_self_coefficient_above_1_is_flagged_and_one_below_is_not():
    assert unstable_equations(shared(1.2), ["1"]) == [UnstableEquation("m", "x", (1.2,), None)]
    assert unstable_equations(shared(-1.2, (0.3, R)), ["1"])[0].coefficients == (-1.2,)
    assert unstable_equations(shared(0.9), ["1"]) == []
    assert unstable_equations(shared(1.0), ["1"]) == []


def test_another_term_in_the_state_keeps_an_equation_from_being_flagged():
    assert unstable_equations(shared(1.2, (-0.5, (("x", 1), ("r", 1)))), ["1"]) == []
    assert unstable_equations(shared(1.2, (-0.1, (("x", 2),))), ["1"]) == []
    # Without a linear term in the state there is no self-coefficient to judge.
    assert unstable_equations({"m": DiscoveredEquation("m", "x", ((2.0, R),), 50)}, ["1"]) == []


def test_per_participant_equations_are_flagged_for_the_participants_they_run_away_for():
    terms = ((0.1, ()), (1.0, X), (-0.1, (("x", 1), ("r", 1))))
    rows = (
        (0.1, 1.2, 0.0),  # the x*r term is absent for this participant: flagged
        (0.1, 1.2, -0.5),  # the x*r term holds x: not judged
        (0.1, 0.9, 0.0),  # stable
        (0.0, -1.1, 0.0),  # alternating and growing: flagged
    )
    equations = {"m": DiscoveredEquation("m", "x", terms, 80, rows)}
    found = unstable_equations(equations, ["a", "b", "c", "d"])
    assert found == [UnstableEquation("m", "x", (1.2, -1.1), ("a", "d"))]
    assert unstable_report(equations, ["a", "b", "c", "d"]) == [
        {"module": "m", "state": "x", "coefficients": (1.2, -1.1), "participants": ("a", "d")}
    ]


def test_the_fitted_model_carries_the_flag_as_a_comment_and_stays_canonical():
    source = (EXAMPLES / "individual_differences.spice").read_text()
    value = (("x_value_reward", 1),)
    reward = (("c_reward", 1),)
    equations = {
        "x_value_reward_chosen": DiscoveredEquation(
            "x_value_reward_chosen", "x_value_reward", ((0.7, value), (0.3, reward)), 100
        ),
        "x_value_reward_not_chosen": DiscoveredEquation(
            "x_value_reward_not_chosen",
            "x_value_reward",
            ((0.1, ()), (0.8, value)),
            100,
            ((0.1, 0.8), (0.05, 1.25), (0.2, 0.6)),
        ),
    }
    program = parse(source)
    text = format_program(fitted_program(program, equations, {}, 4, TABLE_FILE), source)
    with pytest.warns(UserWarning) as notes:
        flagged = flag_unstable_equations(text, equations, ["1", "2", "3"])
    assert [str(note.message) for note in notes] == [
        "module 'x_value_reward_not_chosen' is unstable for participants '2' (1 of 3): "
        "x_value_reward' = b x_value_reward + ... with |b| up to 1.25, and no other term in "
        "x_value_reward, so repeated updates grow x_value_reward until the clip holds it"
    ]
    changed = [line for line in flagged.splitlines() if line not in text.splitlines()]
    assert changed == [
        "    x_value_reward_not_chosen = clip(x_value_reward_not_chosen_c0 + "
        "x_value_reward_not_chosen_c1 * x_value_reward, -100, 100)  # unstable for 1 of 3 "
        "participants: x_value_reward' = b x_value_reward + ... with |b| up to 1.25 grows "
        "until the clip holds it"
    ]
    assert format_program(parse(flagged), flagged) == flagged
    assert load_ir(flagged).name == "individual_differences"
