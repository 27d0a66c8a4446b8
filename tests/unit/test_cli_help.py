"""What users notice first: every command's --help has an example, an empty list says what
to do, and the sample configs describe the sizes that benchbed/sizes.py defines."""

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from benchbed.cli.main import cli
from benchbed.sizes import SIZES

SAMPLES = Path(__file__).parents[2] / "samples" / "deployments"


def commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += commands(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", commands(cli), ids=lambda path: " ".join(path) or "benchbed")
def test_every_help_gives_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="benchbed")
    assert result.exit_code == 0, result.output
    examples = result.output.split("Examples:\n", 1)
    assert len(examples) == 2, f"benchbed {' '.join(path)} --help has no example"
    lines = [line.strip() for line in examples[1].splitlines() if line.strip()]
    assert lines and all(line.startswith(" ".join(("benchbed", *path[:1]))) for line in lines)


def test_examples_name_real_commands_and_options() -> None:
    """Each example parses: a renamed command or option breaks this test, not a user."""
    from benchbed.cli.examples import EXAMPLES

    for examples in EXAMPLES.values():
        for example in examples:
            argv = shlex.split(example.split("#")[0].split(">")[0])[1:]
            command: click.Command = cli
            name = "benchbed"
            while isinstance(command, click.Group):
                name, argv = argv[0], argv[1:]
                command = command.commands[name]
            command.make_context(name, argv)  # raises on an unknown or a missing option


def test_empty_list_says_how_to_create_a_deployment(home: Path) -> None:
    result = CliRunner().invoke(cli, ["deployment", "list"], prog_name="benchbed")
    assert result.exit_code == 0
    assert result.output.strip().splitlines() == [
        "No deployments yet. Create one with: benchbed deployment create --file CONFIG "
        "--name NAME (example configs: samples/deployments/)"]
    listed = CliRunner().invoke(cli, ["deployment", "list", "--json"], prog_name="benchbed")
    assert listed.output.strip() == "[]"


def test_sample_comments_match_the_size_table() -> None:
    described = 0
    for sample in SAMPLES.glob("*.*"):
        text = sample.read_text()
        for name, cpus, amount, unit in re.findall(
                r"\b(\w+): (\d+) v?CPUs?, (\d+) (MiB|GiB)", text):
            mib = int(amount) * (1024 if unit == "GiB" else 1)
            assert SIZES.get(name) == (int(cpus), mib), f"{sample.name}: {name}"
            described += 1
    assert described >= len(SIZES)
