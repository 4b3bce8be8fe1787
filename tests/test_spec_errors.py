"""The spec's contract, tried as a new user would: strict values, every problem at once, messages in the spec's
words at the element to change, and any input file, however nested, large or binary, refused in one paragraph."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ltspec.cli import app
from ltspec.spec import SpecError, load_spec, parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_spec import MINIMAL, problems  # noqa: E402
from test_spec import only_problem as only  # noqa: E402

# What a message must never show: pydantic's wording, its union tags, or a regex.
INTERNALS = re.compile(r"Input should|discriminator|Unable to extract|tag |\^\(|\[0-9\]|\$'|pattern|"
                       r"String should|valid (integer|number|boolean|string)")


def text(problem) -> str:
    return f"{problem.message} (hint: {problem.hint})"


@pytest.mark.parametrize("change, path, where, expected, given_", [
    (("epochs = 4", 'epochs = "12"'), ("train", "epochs"), (11, 10), "expected a whole number", 'the string "12"'),
    (("lr = 0.05", 'lr = "0.01"'), ("train", "lr"), (12, 6), "expected a number", 'the string "0.01"'),
    (("seeds = [0]", 'seeds = [0, "1"]'), ("seeds", 1), (2, 13), "expected a whole number", 'the string "1"'),
    (('dataset = "digits"', 'dataset = "digits"\nbatch_size = "64"'), ("data", "batch_size"), (6, 14),
     "expected a whole number", 'the string "64"'),
    (('dataset = "digits"', 'dataset = "digits"\ndownload = "yes"'), ("data", "download"), (6, 12),
     "expected true or false", 'the string "yes"'),
    (('dataset = "digits"', 'dataset = "digits"\ndownload = 1'), ("data", "download"), (6, 12),
     "expected true or false", "the whole number 1"),
    (("epochs = 4", "epochs = 4.0"), ("train", "epochs"), (11, 10), "expected a whole number", "the number 4.0"),
    (("lr = 0.05", "lr = inf"), ("train", "lr"), (12, 6), "finite", "inf"),
])
def test_a_value_of_the_wrong_type_is_reported_not_converted(change, path, where, expected, given_):
    problem = only(MINIMAL.replace(*change))
    assert problem.path == path and (problem.line, problem.column) == where
    assert expected in problem.message and given_ in problem.message, problem.message


def test_a_quoted_number_gets_told_how_to_write_it():
    assert only(MINIMAL.replace("epochs = 4", 'epochs = "12"')).hint == "write 12 without quotes"


def test_an_integer_is_a_number():
    loaded = parse_spec(MINIMAL.replace("lr = 0.05", "lr = 1"))
    assert loaded.spec.train.lr == 1.0 and isinstance(loaded.spec.train.lr, float)


def test_a_pair_is_an_array_of_two_strings():
    problem = only(MINIMAL.replace('["init", "trained"]', '["init", 3]'))
    assert problem.path == ("measure", "pairs", 0, 1) and "expected a string" in problem.message


def test_a_repeated_seed_is_named_at_the_repeat():
    """Two equal seeds are one trunk trained twice under one key: a slip to report, not "2 seeds"."""
    problem = only(MINIMAL.replace("seeds = [0]", "seeds = [0, 1, 0]"))
    assert problem.path == ("seeds", 2) and (problem.line, problem.column) == (2, 16)
    assert "seed 0 is listed twice" in problem.message and "seeds[0]" in problem.message, problem.message


@pytest.mark.parametrize("change, path, where", [
    (("seeds = [0]", "seeds = [99999999999999999999999]"), ("seeds", 0), (2, 10)),
    (("seeds = [0]", "seeds = [0, 9223372036854775808]"), ("seeds", 1), (2, 13)),
    (("epochs = 4", "epochs = 10000000000000000000000000"), ("train", "epochs"), (11, 10)),
    (("lr = 0.05", "lr = -9223372036854775809"), ("train", "lr"), (12, 6)),
])
def test_an_integer_beyond_tomls_64_bits_is_refused_at_validation(change, path, where):
    """TOML integers are 64-bit, and a TOML reader must refuse what does not fit (Tombi says "invalid integer:
    number too large to fit in target type"); Python's reader takes any size, so the spec checks it."""
    problem = only(MINIMAL.replace(*change))
    assert problem.path == path and (problem.line, problem.column) == where
    assert "beyond TOML's 64-bit integers" in problem.message, problem.message


def test_an_integer_beyond_64_bits_of_any_length_is_refused_in_the_file_and_in_an_override():
    long = "9" * 5000  # past the 4,300 digits Python's int() reads
    problem = only(MINIMAL.replace("seeds = [0]", f"seeds = [1, {long}]"))
    assert problem.path == ("seeds", 1) and (problem.line, problem.column) == (2, 13)
    assert "an integer of 5,000 digits is beyond TOML's 64-bit integers" in problem.message
    with pytest.raises(SpecError) as caught:
        parse_spec(MINIMAL, "bad.toml", ("seeds=[99999999999999999999999]",))
    assert "beyond TOML's 64-bit integers" in caught.value.problems[0].message
    assert "set by the override" in caught.value.problems[0].message
    with pytest.raises(SpecError, match="beyond TOML's 64-bit integers"):
        parse_spec(MINIMAL, "bad.toml", (f"seeds=[{long}]",))


def test_an_override_longer_than_a_file_name_is_an_override(tmp_path):
    """`seeds=[<5,000 digits>]` is no file name (the OS refuses one over 255 bytes): it was a traceback."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL)
    result = CliRunner().invoke(app, ["validate", str(spec), f"seeds=[{'9' * 5000}]"])
    assert result.exit_code == 2 and "beyond TOML's 64-bit integers" in result.output, result.output


def test_the_largest_64_bit_integers_are_toml():
    source = MINIMAL.replace("seeds = [0]", "seeds = [9223372036854775807]")
    assert parse_spec(source).spec.seeds == [2**63 - 1]
    assert "64-bit" not in only(MINIMAL.replace("lr = 0.05", "lr = -9223372036854775808")).message


def test_every_problem_at_once_even_after_a_wrong_value():
    found = problems(MINIMAL.replace('dataset = "digits"', 'dataset = "digts"')
                     .replace('arch = "lenet300100"', 'arch = "lenet30"')
                     .replace("milestones = [2]", "milestones = [9]")
                     .replace('start = "trained"', 'start = "rewind@99"'))
    assert [problem.path for problem in found] == [
        ("data", "dataset"), ("model", "arch"), ("train", "schedule", "milestones", 0), ("arms", "finetune", "start")]


def test_no_cross_field_problem_is_reasoned_from_a_wrong_value():
    """epochs is wrong, so the milestone and rewind checks, which compare with it, stay silent."""
    found = problems(MINIMAL.replace("epochs = 4", 'epochs = "4"').replace('start = "trained"', 'start = "rewind@2"'))
    assert [problem.path for problem in found] == [("train", "epochs")]


def test_a_base_value_the_sweep_replaces_is_checked():
    problem = only(MINIMAL.replace("lr = 0.05", 'lr = "abc"') + '\n[sweep]\n"train.lr" = [0.01, 0.1]\n')
    assert problem.path == ("train", "lr") and problem.line == 12 and 'the string "abc"' in problem.message


def test_a_wrong_sweep_value_is_reported_once_at_the_value():
    problem = only(MINIMAL + '\n[sweep]\n"train.lr" = [0.01, 1979-05-27]\n')
    assert problem.path == ("sweep", "train.lr", 1) and (problem.line, problem.column) == (30, 21)


def test_plan_says_which_values_the_sweep_replaces(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL + '\n[sweep]\n"train.lr" = [0.01, 0.1]\n')
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 0, result.output
    assert "the sweep sets train.lr to 0.01, 0.1, replacing 0.05 set in the file" in result.output


@pytest.mark.parametrize("change, path, hint", [
    (('dataset = "digits"', 'dataset = "digts"'), ("data", "dataset"), "did you mean `digits`?"),
    (('arch = "lenet300100"', 'arch = "lenet-300-100"'), ("model", "arch"), "did you mean `lenet300100`?"),
    (('kind = "imp"', 'kind = "impp"'), ("masks", "imp", "kind"), "did you mean `imp`?"),
    (('kind = "sgd"', 'kind = "sdg"'), ("train", "optimizer", "kind"), "did you mean `sgd`?"),
    (('kind = "step"', 'kind = "stepp"'), ("train", "schedule", "kind"), "did you mean `step`?"),
    (('start = "trained"', 'start = "traned"'), ("arms", "finetune", "start"), "did you mean `trained`?"),
    (('start = "trained"', 'start = "random"'), ("arms", "finetune", "start"), "did you mean `trained`?"),
    (("rounds = 2", 'rounds = 2\nreset = "rewind10"'), ("masks", "imp", "reset"), "did you mean `rewind@k`?"),
    (("[measure]", '[report]\nlayouts = ["arm"]\n\n[measure]'), ("report", "layouts", 0), "did you mean `arms`?"),
    (("[measure]", '[measure]\ntensors = ["conv2d"]'), ("measure", "tensors", 0), "did you mean `conv`?"),
])
def test_every_closed_vocabulary_says_did_you_mean(change, path, hint):
    problem = only(MINIMAL.replace(*change))
    assert problem.path == path and problem.hint == hint, problem.render("bad.toml")
    assert not INTERNALS.search(text(problem)), text(problem)


@pytest.mark.parametrize("change, words", [
    (('kind = "imp"\n', ""), "needs a `kind`: one of `oneshot`, `imp`, `admm`, `random`, `magnitude_init`"),
    (('start = "trained"', 'start = "random"'),
     "one of `init`, `reinit`, `trained`, `rewind@k`, `signs-reinit` or `signs-constant`"),
    (('name = "tiny"', 'name = "my tiny"'), "letters, digits"),
    (("rate = 0.5", "rate = 1.5"), "must be less than 1.0, found the number 1.5"),
    (('["init", "trained"]', '["init"]'), "item 2 is missing"),
    (("p = [0.2]", "p = []"), "must not be empty"),
    (("seeds = [0]", "seeds = [-1]"), "must be at least 0"),
])
def test_messages_are_in_the_specs_words(change, words):
    problem = only(MINIMAL.replace(*change))
    assert words in problem.message and not INTERNALS.search(text(problem)), text(problem)


def test_a_range_error_in_a_list_points_at_the_element():
    problem = only(MINIMAL.replace("p = [0.2]", "p = [0.2, 1.5]"))
    assert problem.path == ("measure", "p", 1) and (problem.line, problem.column) == (26, 11)
    assert problem.render("bad.toml").startswith("bad.toml:26:11: measure.p[1]: ")


def test_an_unclosed_array_is_reported_where_it_opens():
    problem = only(MINIMAL.replace("p = [0.2]", "p = [0.2,"))
    assert (problem.line, problem.column) == (26, 5) and "never closed" in problem.message


def test_an_unclosed_array_at_the_end_of_the_file():
    problem = only(MINIMAL + "exclude = [\n")
    assert problem.line == 28 and "never closed" in problem.message


def test_a_table_declared_twice_is_named_as_toml_writes_it():
    problem = only(MINIMAL + '\n[masks.imp]\nkind = "oneshot"\n')
    assert problem.message == "TOML syntax error: the table [masks.imp] is declared twice" and problem.line == 29


@pytest.mark.parametrize("source", [
    "a = " + "[" * 2000 + "]" * 2000,
    "a = " + "[" * 2000,
    "a = " + "{b = " * 600 + "1" + "}" * 600,
    "[" + ".".join(["t"] * 500) + "]\nx = 1\n",
    ".".join(["t"] * 500) + " = 1\n",
    "\n".join("[" + ".".join(["t"] * depth) + "]" for depth in range(1, 500)),
])
def test_any_nesting_is_refused_in_one_problem(source):
    problem = only(source)
    assert "nests deeper than 16" in problem.message and problem.line is not None


def test_a_plan_over_the_size_limits_is_refused_before_it_is_built():
    seeds = only(MINIMAL.replace("seeds = [0]", f"seeds = {list(range(101))}"))
    assert seeds.path == ("seeds",) and "has 101 items; at most 100" in seeds.message
    sweep = only(MINIMAL + f'\n[sweep]\n"train.lr" = {[0.1] * 40}\n"train.epochs" = {[4] * 40}\n')
    assert sweep.path == ("sweep",) and "1,600 points" in sweep.message
    rounds = only(MINIMAL.replace("rounds = 2", "rounds = 100000"))
    assert rounds.path == ("masks", "imp") and rounds.line == 16
    assert "up to 600,002 stages; a spec has at most 50,000" in rounds.message
    points = only(MINIMAL.replace("rounds = 2", "rounds = 60").replace("seeds = [0]", f"seeds = {list(range(50))}")
                  + '\n[sweep]\n"train.lr" = [0.01, 0.1, 0.2]\n')
    assert points.path == ("sweep",) and "up to 54,300 stages" in points.message and "at most 50,000" in points.message


def test_ten_thousand_unknown_keys_are_not_all_listed():
    keys = "".join(f"unknown_{index} = 1\n" for index in range(10_000))
    found = problems(MINIMAL.replace("[data]\n", "[data]\n" + keys) + '\n[sweep]\n"train.lr" = [0.01, 0.1]\n')
    assert len(found) == 101 and found[-1].message == "and more problems: these are the first 100"
    assert [problem.path for problem in found[:2]] == [("data", "unknown_0"), ("data", "unknown_1")]


@pytest.mark.parametrize("change, path, words", [
    (('name = "tiny"', f'name = "{"n" * 201}"'), ("name",), "201 characters long; at most 200"),
    (("[measure]", f'[tracking]\nexperiment = "{"e" * 501}"\n\n[measure]'), ("tracking", "experiment"),
     "501 characters long; at most 500"),
    (("[measure]", '[tracking]\nexperiment = "a\\u0000b"\n\n[measure]'), ("tracking", "experiment"), "NUL"),
    (('dataset = "digits"', 'dataset = "digits"\nroot = "data\\u0000"'), ("data", "root"), "NUL"),
    (("[measure]", '[storage]\nroot = ""\n\n[measure]'), ("storage", "root"), "must not be empty"),
])
def test_names_and_paths_that_run_would_refuse(change, path, words):
    problem = only(MINIMAL.replace(*change))
    assert problem.path == path and words in problem.message, problem.message


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_text_is_a_spec_or_a_spec_error(data):
    """Cut, spliced or garbled: the loader answers with problems (or a spec), never another exception."""
    source = MINIMAL
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(source)))
        end = data.draw(st.integers(start, min(len(source), start + 20)))
        insert = data.draw(st.text(alphabet='[]{}="\',.#\n 0123456789abc\\\x00-', max_size=12))
        source = source[:start] + insert + source[end:]
    try:
        parse_spec(source, "fuzz.toml")
    except SpecError as error:
        assert error.problems and all(problem.line for problem in error.problems)


def test_an_endless_file_is_refused_after_the_size_limit():
    with pytest.raises(SpecError) as caught:
        load_spec("/dev/zero")
    assert "larger than 1,048,576 bytes" in str(caught.value)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ltspec", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("content", [
    b"a = " + b"[" * 2000 + b"]" * 2000,
    b"[" + b".".join([b"t"] * 500) + b"]\n",
    bytes(range(256)) * 4,
    b"# " + b"x" * (2 << 20),
    b'name = "x"\n\x00\x01',
])
def test_any_file_exits_2_with_one_paragraph(tmp_path, content):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(content)
    result = run_cli("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr.splitlines()) == 2 and result.stderr.startswith("error:"), result.stderr


MISTAKES_IN_EVERY_CHECK = """\
name = "order"
seeds = [0]
data = { dataset = "digits" }
model = { arch = "mlp" }
train = { epochs = 2, lr = 0.1 }
arms = { lottery = { start = "rewind@9" } }
measure = { pairs = [["init", "nothere"]] }
storage = { checkpoint_every = 0 }
"""


def test_problems_come_in_the_files_order_whichever_check_found_them(tmp_path):
    """Pydantic's field errors are found before the cross-field checks; a user reads the file top to bottom."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MISTAKES_IN_EVERY_CHECK)
    with pytest.raises(SpecError) as raised:
        load_spec(spec)
    positions = [(problem.line, problem.column) for problem in raised.value.problems]
    assert len(positions) == 5 and positions == sorted(positions)
    assert positions[-1][0] == len(MISTAKES_IN_EVERY_CHECK.splitlines())
