"""Tests of the CSV loader (spicedsl.runtime.data) and the drifting bandit."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spicedsl.errors import DataError
from spicedsl.runtime.bandit import draw_rewards, drifting_reward_probabilities
from spicedsl.runtime.data import ColumnMap, Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent
CASES = Path("tests/cases/data")
UPDATE_GOLDEN = bool(os.environ.get("SPICEDSL_UPDATE_GOLDEN"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_same(a: Dataset, b: Dataset) -> None:
    """Every field of two datasets is equal (NaN equal to NaN)."""
    for name in ("choices", "reward", "lengths", "participant_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    assert (a.rewards is None) == (b.rewards is None)
    if a.rewards is not None:
        np.testing.assert_array_equal(a.rewards, b.rewards)
    assert a.inputs.keys() == b.inputs.keys()
    for name in a.inputs:
        np.testing.assert_array_equal(a.inputs[name], b.inputs[name], err_msg=name)
    for name in ("session_ids", "participant_ids", "n_actions", "choice_base", "reward_range"):
        assert getattr(a, name) == getattr(b, name), name


# --- golden error messages ------------------------------------------------------------


def golden_cases() -> list[str]:
    return sorted({p.stem for p in (ROOT / CASES).iterdir() if p.suffix != ".expected"})


@pytest.mark.parametrize("name", golden_cases())
def test_bad_data_message(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    options_file = CASES / f"{name}.json"
    options = json.loads(options_file.read_text()) if options_file.exists() else {}
    data_files = [CASES / f"{name}{suffix}" for suffix in (".csv", ".tsv")]
    path = options.pop("path", None) or next(str(p) for p in data_files if p.exists())
    if "columns" in options:
        options["columns"] = ColumnMap(**options["columns"])
    with pytest.raises(DataError) as caught:
        load_dataset(path, **options)
    text = caught.value.render() + "\n"
    expected = CASES / f"{name}.expected"
    if UPDATE_GOLDEN:
        expected.write_text(text, encoding="utf-8")
    else:
        assert expected.exists(), f"no {expected}: run with SPICEDSL_UPDATE_GOLDEN=1"
        assert text == expected.read_text(encoding="utf-8")


def test_every_expected_file_has_a_case() -> None:
    stems = {p.stem for p in (ROOT / CASES).glob("*.expected")}
    assert stems == set(golden_cases())


# --- loading ----------------------------------------------------------------------------


def test_one_based_choices_and_padding(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward\ns1,1,0\ns1,2,1\ns1,2,1\ns2,1,1\ns2,2,0\n",
    )
    data = load_dataset(file)
    assert data.choice_base == 1 and data.n_actions == 2
    np.testing.assert_array_equal(data.choices, [[0, 1, 1], [0, 1, -1]])
    np.testing.assert_array_equal(data.reward, [[0, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(data.mask, [[True, True, True], [True, True, False]])
    assert data.lengths.tolist() == [3, 2] and data.n_trials == 5
    assert data.session_ids == ("s1", "s2") and data.participant_ids == ("s1", "s2")
    assert data.choices.dtype == np.int64 and data.reward.dtype == np.float32
    assert data.rewards is None and data.inputs == {}
    assert data.reward_range == (0.0, 1.0)


def test_choice_base_detection_and_overrides(tmp_path: Path) -> None:
    file = write(tmp_path / "d.csv", "session,choice,reward\na,2,0\na,1,1\n")
    assert load_dataset(file).choice_base == 1
    zero_based = load_dataset(file, choice_base=0)
    assert zero_based.choices[0].tolist() == [2, 1] and zero_based.n_actions == 3
    only_two = write(tmp_path / "e.csv", "session,choice,reward\na,2,0\na,2,1\n")
    assert load_dataset(only_two, n_actions=3).choice_base == 0  # smallest choice is not 1
    assert load_dataset(file, n_actions=4).n_actions == 4
    with pytest.raises(ValueError, match="choice_base"):
        load_dataset(file, choice_base=2)
    with pytest.raises(ValueError, match="n_actions"):
        load_dataset(file, n_actions=1)


def trials_file(path: Path, choices: list[int]) -> Path:
    """A file of sessions of 10 trials with these choices, in order."""
    rows = "".join(f"s{i // 10},{c},{i % 2}\n" for i, c in enumerate(choices))
    return write(path, "session,choice,reward\n" + rows)


TWO_ARMED = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0] * 20  # 200 trials, both actions common


def test_a_stray_large_choice_needs_the_number_of_actions(tmp_path: Path) -> None:
    choices = list(TWO_ARMED)
    choices[150] = 7
    file = trials_file(tmp_path / "d.csv", choices)
    with pytest.raises(DataError) as caught:
        load_dataset(file)
    error = caught.value
    assert (error.row, error.column) == (152, "choice")
    assert error.message == "choice 7 makes 8 actions, but choices 2..6 never occur"
    assert "'actions 8' in the model or --actions 8" in error.hint
    assert load_dataset(file, n_actions=8).n_actions == 8


def test_an_action_nobody_chooses_gets_a_note_with_the_counts(tmp_path: Path) -> None:
    file = trials_file(tmp_path / "d.csv", [2 * c + 1 for c in TWO_ARMED])
    with pytest.warns(UserWarning) as notes:
        data = load_dataset(file)
    assert data.n_actions == 3 and data.choice_base == 1
    assert [str(note.message) for note in notes] == [
        f"{file}: 3 actions are inferred from the choices, but choice 2 never occurs "
        "(rows per choice: 1: 100, 2: 0, 3: 100)"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(file, n_actions=3).n_actions == 3


@pytest.mark.parametrize("n_actions", [None, 2])
def test_a_stray_zero_in_a_one_based_file_is_reported_at_its_row(
    tmp_path: Path, n_actions: int | None
) -> None:
    choices = [c + 1 for c in TWO_ARMED]
    choices[100] = 0
    file = trials_file(tmp_path / "d.csv", choices)
    with pytest.raises(DataError) as caught:
        load_dataset(file, n_actions=n_actions)
    error = caught.value
    assert (error.row, error.column) == (102, "choice")
    assert error.message == (
        "choice 0 is out of range: the file looks 1-based (its other choices are 1..2)"
    )
    assert error.hint.startswith("fix or remove the rows with choice 0")
    assert load_dataset(file, choice_base=0, n_actions=3).n_actions == 3


def test_a_stray_top_choice_in_a_zero_based_file_is_reported_at_its_row(tmp_path: Path) -> None:
    choices = list(TWO_ARMED)
    choices[60] = choices[61] = 2
    file = trials_file(tmp_path / "d.csv", choices)
    with pytest.raises(DataError) as caught:
        load_dataset(file, n_actions=2)
    error = caught.value
    assert (error.row, error.column) == (62, "choice")
    assert error.message == (
        "choice 2 is out of range for 2 actions coded 0..1 (the file looks 0-based: it has "
        "choice 0); 1 more row is out of range too"
    )


def test_hbayesdm_tab_file(tmp_path: Path) -> None:
    file = write(
        tmp_path / "gng.txt",
        "subjID\tchoice\toutcome\n1\t1\t1\n1\t2\t-1\n1\t2\t1\n2\t1\t-1\n2\t1\t-1\n",
    )
    data = load_dataset(file, columns=ColumnMap(session="subjID", reward="outcome"))
    assert data.reward_range == (-1.0, 1.0) and data.choice_base == 1
    np.testing.assert_array_equal(data.reward, [[1, -1, 1], [-1, -1, 0]])
    np.testing.assert_array_equal(data.choices, [[0, 1, 1], [0, 0, -1]])
    assert data.session_ids == ("1", "2")


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_separator_is_sniffed(tmp_path: Path, sep: str) -> None:
    lines = ["session,choice,reward", "a,0,1", "a,1,0"]
    file = write(tmp_path / "d.csv", "\n".join(line.replace(",", sep) for line in lines) + "\n")
    assert load_dataset(file).choices[0].tolist() == [0, 1]
    assert load_dataset(file, sep=sep).n_trials == 2


def test_sessions_are_numbered_in_file_order(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward,participant\nb,0,1,p\nb,1,0,p\nb,1,1,p\na,1,0,q\na,0,1,q\n",
    )
    data = load_dataset(file)
    assert data.session_ids == ("b", "a") and data.participant_ids == ("p", "q")
    np.testing.assert_array_equal(data.choices, [[0, 1, 1], [1, 0, -1]])
    assert data.participant_index.tolist() == [0, 1]


def test_a_session_that_comes_back_after_others_is_an_error(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward\na,0,1\na,1,0\nb,1,0\nb,0,1\nc,0,1\nc,1,1\na,1,1\na,0,0\n",
    )
    with pytest.raises(DataError) as caught:
        load_dataset(file)
    error = caught.value
    assert (error.row, error.column) == (8, "session")
    assert "session 'a' appears again here, after other sessions" in error.message
    assert "its earlier rows end on row 3" in error.message
    assert "sort the file by session" in error.hint


def test_rewards_are_read_as_the_file_gives_them(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward,reward_0,reward_1,reward_2\n"
        "a,0,2,2,4,NA\na,1,4,2,4,0\na,0,0,0,,10\n",
    )
    data = load_dataset(file)
    assert data.n_actions == 3  # one counterfactual column per action, though 2 never chosen
    assert data.reward_range == (0.0, 10.0)
    assert data.rewards is not None and data.rewards.shape == (1, 3, 3)
    expected = np.array([[2, 4, np.nan], [2, 4, 0], [0, np.nan, 10]], dtype=np.float32)
    np.testing.assert_array_equal(data.rewards[0], expected)
    np.testing.assert_array_equal(data.reward[0], [2, 4, 0])
    two = load_dataset(file, n_actions=2)
    assert two.rewards is not None and two.rewards.shape == (1, 3, 2)
    assert two.reward_range == (0.0, 4.0)
    constant = write(tmp_path / "e.csv", "session,choice,reward\na,0,3\na,1,3\n")
    assert load_dataset(constant).reward_range is None


def test_counterfactual_rewards_need_a_column_per_action(tmp_path: Path) -> None:
    file = write(tmp_path / "d.csv", "session,choice,reward,reward_0\na,0,1,1\na,1,0,1\n")
    assert load_dataset(file).rewards is None


def test_extra_inputs_and_groupings(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward,cue,blk,exp\n"
        "a,0,1,0.5,x,e1\na,1,0,-2,x,e1\nb,1,1,3,y,e2\nb,0,0,1e3,y,e2\nb,1,0,0,y,e2\n",
    )
    data = load_dataset(file, inputs=("cue",), columns=ColumnMap(block="blk", experiment="exp"))
    np.testing.assert_array_equal(data.inputs["cue"], [[0.5, -2, 0], [3, 1000, 0]])
    assert data.inputs["cue"].dtype == np.float32
    assert data.session_ids == ("a/x", "b/y")
    assert data.session_labels == {
        "session": ("a", "b"),
        "blk": ("x", "y"),
        "exp": ("e1", "e2"),
    }


def test_a_block_column_keys_sessions(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "subject,block,choice,reward\n1,1,0,1\n1,1,1,0\n1,2,1,1\n1,2,0,0\n2,1,0,0\n2,1,1,1\n",
    )
    blocks = load_dataset(file, columns=ColumnMap(session="subject", block="block"))
    keyed = load_dataset(file, columns=ColumnMap(session="subject,block"))
    for data in (blocks, keyed):
        assert data.session_ids == ("1/1", "1/2", "2/1")
        assert data.session_labels["block"] == ("1", "2", "1")
        assert data.session_labels["subject"] == ("1", "1", "2")
        assert data.participant_ids == data.session_ids
    by_subject = load_dataset(
        file, columns=ColumnMap(session="subject", block="block", participant="subject")
    )
    assert by_subject.participant_ids == ("1", "2")
    assert by_subject.participant_index.tolist() == [0, 0, 1]


def test_missed_trials_keep_their_place(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward,cue\na,1,5,0.5\na,,,\na,2,1,1\nb,NaN,NaN,2\nb,2,3,1\n",
    )
    data = load_dataset(file, inputs=("cue",))
    np.testing.assert_array_equal(data.choices, [[0, -1, 1], [-1, 1, -1]])
    assert data.lengths.tolist() == [3, 2] and data.n_missed == 2
    np.testing.assert_array_equal(data.reward, [[5, 0, 1], [0, 3, 0]])
    np.testing.assert_array_equal(data.inputs["cue"], [[0.5, 0, 1], [2, 1, 0]])
    assert data.reward_range == (1.0, 5.0)
    with pytest.raises(DataError) as caught:
        load_dataset(file, inputs=("cue",), missed="error")
    assert (caught.value.row, caught.value.column) == (3, "choice")
    assert "--missed skip" in caught.value.hint
    nan_cue = write(tmp_path / "e.csv", "session,choice,reward,cue\na,1,5,0.5\na,2,1,NaN\n")
    with pytest.raises(DataError) as caught:
        load_dataset(nan_cue, inputs=("cue",))
    assert (caught.value.row, caught.value.column) == (3, "cue")
    assert caught.value.message == "input cue is missing"


def test_per_action_columns(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward,pay_a,pay_b,side_0,side_1\na,1,5,5,2,-1,1\na,2,7,1,7,1,-1\n",
    )
    data = load_dataset(file, inputs=("side",), per_action={"rewards": ["pay_a", "pay_b"]})
    assert data.rewards is not None
    np.testing.assert_array_equal(data.rewards[0], [[5, 2], [1, 7]])
    np.testing.assert_array_equal(data.inputs["side"][0], [[-1, 1], [1, -1]])
    with pytest.raises(DataError) as caught:
        load_dataset(file, n_actions=2, per_action={"rewards": ["pay_a", "pay_b", "side_0"]})
    assert caught.value.row == 1
    assert "names 3 columns, but the data have 2 actions" in caught.value.message


def test_offered_items_from_item_columns(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward,option_a,option_b\n"
        "a,1,10,1,2\na,4,-10,3,4\na,,-10,1,2\na,2,10,1,2\n",
    )
    data = load_dataset(file, offered=("option_a", "option_b"))
    assert data.n_actions == 4 and data.choice_base == 1
    assert data.offered is not None
    np.testing.assert_array_equal(
        data.offered[0],
        [[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]],
    )
    np.testing.assert_array_equal(data.choices[0], [0, 3, -1, 1])
    wrong = write(tmp_path / "e.csv", "session,choice,reward,a,b\ns,1,1,1,2\ns,3,1,1,2\n")
    with pytest.raises(DataError) as caught:
        load_dataset(wrong, offered=("a", "b"))
    assert (caught.value.row, caught.value.column) == (3, "choice")
    assert "choice 3 is not among the items offered on this trial (1, 2)" in caught.value.message


def test_offered_items_from_an_availability_mask(tmp_path: Path) -> None:
    file = write(
        tmp_path / "d.csv",
        "session,choice,reward,open_0,open_1,open_2\na,0,1,1,1,0\na,2,0,0,1,1\n",
    )
    data = load_dataset(file, offered=("open",))
    assert data.offered is not None and data.n_actions == 3
    np.testing.assert_array_equal(data.offered[0], [[1, 1, 0], [0, 1, 1]])


def test_labels_must_be_constant_within_a_session(tmp_path: Path) -> None:
    file = write(tmp_path / "d.csv", "session,choice,reward,phase\na,0,1,1\na,1,0,2\n")
    with pytest.raises(DataError) as caught:
        load_dataset(file, labels=("phase",))
    assert (caught.value.row, caught.value.column) == (3, "phase")


def test_whitespace_bom_blank_lines_and_quotes(tmp_path: Path) -> None:
    file = tmp_path / "d.csv"
    file.write_bytes(b'\xef\xbb\xbfsession, choice, reward\r\n"a,1", 0, 1\r\n\r\n"a,1", 1.0, 0\r\n')
    data = load_dataset(file)
    assert data.session_ids == ("a,1",) and data.choices[0].tolist() == [0, 1]


def test_error_rows_count_file_lines(tmp_path: Path) -> None:
    file = write(tmp_path / "d.csv", "session,choice,reward\n\na,0,1\n\na,1,x\n")
    with pytest.raises(DataError) as caught:
        load_dataset(file)
    assert caught.value.row == 5 and caught.value.column == "reward"


def test_missing_column_suggests_a_close_name(tmp_path: Path) -> None:
    file = write(tmp_path / "d.csv", "Session,choice,rewards\na,0,1\na,1,0\n")
    with pytest.raises(DataError) as caught:
        load_dataset(file)
    assert caught.value.hint is not None
    assert "'Session' for 'session' and 'rewards' for 'reward'" in caught.value.hint


# --- writing ----------------------------------------------------------------------------


def made_dataset() -> Dataset:
    """Three sessions of unequal length, 1-based, with every optional field."""
    nan = np.nan
    return Dataset(
        choices=np.array([[0, 2, 1], [1, 1, -1], [2, 0, 0]]),
        reward=np.array([[0, 0.25, 1], [0.5, 0.75, 0], [1, 0, 0.125]], dtype=np.float32),
        rewards=np.array(
            [
                [[0, 1, 0.5], [0.5, nan, 0.25], [0, 1, 1]],
                [[0.5, 0.5, 0.5], [0.25, 0.75, 0], [0, 0, 0]],
                [[0, 0, 1], [0, 0.5, 0.5], [0.125, 0.5, nan]],
            ],
            dtype=np.float32,
        ),
        inputs={"cue": np.array([[1, 0, 1], [0.5, -1, 0], [2, 2, 2]], dtype=np.float32)},
        lengths=np.array([3, 2, 3]),
        session_ids=("s 1", "s,2", "s3"),
        participant_index=np.array([0, 1, 0]),
        participant_ids=("alice", "bob"),
        n_actions=3,
        choice_base=1,
        reward_range=(0.0, 1.0),
    )


@pytest.mark.parametrize("sep", [",", "\t"])
def test_to_csv_round_trip(tmp_path: Path, sep: str) -> None:
    original = made_dataset()
    file = tmp_path / "out.csv"
    original.to_csv(file, sep=sep)
    header = file.read_text().splitlines()[0].split(sep)
    assert header == ["session", "participant", "choice", "reward"] + [
        f"reward_{a}" for a in range(3)
    ] + ["cue"]
    assert_same(load_dataset(file, inputs=("cue",)), original)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left


def test_to_csv_writes_rewards_as_they_were_read(tmp_path: Path) -> None:
    file = write(tmp_path / "in.csv", "session,choice,reward\na,1,-1\na,2,1\nb,2,0.5\nb,2,-1\n")
    data = load_dataset(file)
    data.to_csv(tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        "session,participant,choice,reward",
        "a,a,1,-1.0",
        "a,a,2,1.0",
        "b,b,2,0.5",
        "b,b,2,-1.0",
    ]


def test_to_csv_groupings_round_trip(tmp_path: Path) -> None:
    file = write(
        tmp_path / "in.csv",
        "session,choice,reward,blk,exp\na,0,1,x,e\na,1,0,x,e\na,,0,y,e\na,1,0,y,e\n",
    )
    data = load_dataset(file, columns=ColumnMap(block="blk", experiment="exp"))
    data.to_csv(tmp_path / "out.csv")
    again = load_dataset(tmp_path / "out.csv", labels=("blk", "exp"))
    assert again.session_ids == data.session_ids == ("a/x", "a/y")
    assert again.session_labels == {k: data.session_labels[k] for k in ("blk", "exp")}
    np.testing.assert_array_equal(again.choices, data.choices)


def test_to_csv_replaces_a_file_and_rejects_clashing_inputs(tmp_path: Path) -> None:
    file = write(tmp_path / "out.csv", "old\n")
    made_dataset().to_csv(file)
    assert file.read_text().startswith("session,")
    original = made_dataset()
    clashing = Dataset(**{**vars(original), "inputs": {"reward": original.reward}})
    with pytest.raises(ValueError, match="standard column"):
        clashing.to_csv(file)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_dataset_checks_shapes() -> None:
    fields = vars(made_dataset())
    with pytest.raises(ValueError, match="lengths"):
        Dataset(**{**fields, "lengths": np.array([3, 2])})
    with pytest.raises(ValueError, match="rewards"):
        Dataset(**{**fields, "n_actions": 2})


reward_values = st.one_of(st.integers(-40, 40).map(lambda k: k / 4), st.floats(0, 1, width=32))


@settings(max_examples=60, deadline=None)
@given(
    sessions=st.lists(
        st.lists(st.tuples(st.integers(0, 2), reward_values), min_size=2, max_size=5),
        min_size=1,
        max_size=4,
    ),
    base=st.sampled_from([0, 1]),
)
def test_load_write_load_is_stable(
    tmp_path_factory: pytest.TempPathFactory, sessions: list, base: int
) -> None:
    folder = tmp_path_factory.mktemp("rt")
    lines = ["session,choice,reward"]
    for number, trials in enumerate(sessions):
        lines += [f"s{number},{choice + base},{reward!r}" for choice, reward in trials]
    file = write(folder / "in.csv", "\n".join(lines) + "\n")
    first = load_dataset(file, choice_base=base, n_actions=3)
    first.to_csv(folder / "out.csv")
    assert_same(
        load_dataset(folder / "out.csv", choice_base=base, n_actions=first.n_actions), first
    )


# --- the drifting bandit ------------------------------------------------------------------


def test_bandit_probabilities_drift_by_sigma() -> None:
    sigma = 0.01
    p = drifting_reward_probabilities(np.random.default_rng(1), 200, 50, 2, sigma=sigma, start=0.5)
    assert p.shape == (200, 50, 2) and p.dtype == np.float64
    assert ((p >= 0) & (p <= 1)).all()
    assert (p[:, 0] == 0.5).all()
    assert np.std(np.diff(p, axis=1)) == pytest.approx(sigma, rel=0.05)


def test_bandit_is_reproducible_and_clipped() -> None:
    def run(seed: int) -> np.ndarray:
        return drifting_reward_probabilities(np.random.default_rng(seed), 5, 300, 3, sigma=0.3)

    assert np.array_equal(run(7), run(7)) and not np.array_equal(run(7), run(8))
    p = run(7)
    assert ((p >= 0) & (p <= 1)).all()
    assert (p == 0).any() and (p == 1).any()  # large steps hit both bounds


def test_draw_rewards() -> None:
    rng = np.random.default_rng(3)
    p = np.array([0.0, 1.0, 0.3])
    draws = np.stack([draw_rewards(rng, p) for _ in range(4000)])
    assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
    assert draws[:, 0].sum() == 0 and draws[:, 1].all()
    assert draws[:, 2].mean() == pytest.approx(0.3, abs=0.03)
    with pytest.raises(ValueError):
        draw_rewards(rng, np.array([1.5]))
    with pytest.raises(ValueError):
        draw_rewards(rng, np.array([np.nan]))


def test_bandit_rejects_bad_settings() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        drifting_reward_probabilities(rng, 1, 1, 2, sigma=-1)
    with pytest.raises(ValueError):
        drifting_reward_probabilities(rng, 1, 1, 2, start=2)
    assert drifting_reward_probabilities(rng, 2, 0, 2).shape == (2, 0, 2)
