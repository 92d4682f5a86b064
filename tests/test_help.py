"""`--help` and shell completion: each command's summary shown whole, its help ending with
two real examples that parse, and Tab completing commands, options, choices and local
paths through Click's own completion machinery, in this process."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from test_imports import imported_heavy_modules

EXIT_USAGE = 2


def click_group():
    import typer.main

    from embinspect.cli import app

    return typer.main.get_command(app)


COMMANDS = list(click_group().commands)


# --- --help -------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", ["80", "40"])
def test_every_summary_is_shown_whole(cli, columns):
    """Click cuts a summary taken from the docstring at the width left ("..."); each
    command's one-line summary is listed whole, on a narrow terminal wrapped, never cut."""
    run = cli("--help", env={"COLUMNS": columns})
    assert run.returncode == 0, run.stderr
    listing = run.stdout.split("\nCommands:\n", 1)[1]
    assert "..." not in listing and "…" not in listing
    flowing = " ".join(listing.split())  # a summary wrapped on a narrow terminal, as one line
    width = max(len(name) for name in COMMANDS)
    for name, command in click_group().commands.items():
        summary = command.short_help
        assert summary and len(summary) <= 80 - 6 - width, name  # one line at 80 columns
        assert f"{name} {summary}" in flowing, name
        if columns == "80":
            assert f"  {name.ljust(width)}  {summary}\n" in listing, name


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_help_ends_with_two_examples(cli, name):
    run = cli(name, "--help", env={"COLUMNS": "80"})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.rstrip("\n").split("\n")
    assert lines[-4:-2] == ["  Examples:", ""], lines[-6:]
    examples = lines[-2:]
    for example in examples:
        assert example.startswith(f"    embinspect {name} "), example
    assert examples[0] != examples[1]


@pytest.mark.parametrize("name", COMMANDS)
def test_each_example_parses(name):
    """The examples name options that exist, with values they accept (Click parses each
    command line as it would run it; nothing is opened)."""
    command = click_group().commands[name]
    examples = command.epilog.split("\b\n", 1)[1].splitlines()
    assert len(examples) == 2
    for example in examples:
        words = shlex.split(example)
        assert words[:2] == ["embinspect", name]
        context = command.make_context(name, words[2:])  # raises on an unknown option
        assert context.params["model" if name != "diff" else "model_a"]


# --- shell completion -----------------------------------------------------------------------


def bash_complete(cli, line: str, cwd: Path | None = None, env: dict | None = None) -> list[str]:
    """What bash is offered for the last word of ``line`` (a trailing space: a new word),
    as the script of --show-completion bash asks for it."""
    words = line.split(" ")
    run = cli(
        env={
            "_EMBINSPECT_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
            **(env or {}),
        },
        cwd=cwd,
    )
    assert run.returncode == 0 and run.stderr == "", run.stderr
    offered = run.stdout.removesuffix("\n")  # one value a line; none: an empty line
    return offered.split("\n") if offered else []


@pytest.fixture
def folder(tmp_path) -> Path:
    """A working folder: two models, a hidden file, a folder of models."""
    (tmp_path / "models" / "minilm").mkdir(parents=True)
    (tmp_path / "models" / "glove.txt").write_text("king 0.1 0.2\n")
    (tmp_path / "models" / ".hidden").write_text("")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / ".secret").write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("embinspect to", ["tokens"]),
        ("embinspect p", ["positions", "plot"]),
        ("embinspect u", ["undertrained"]),
        (
            "embinspect neighbors model king --to",
            ["--top-k", "--tokenizer", "--tokenizer-revision"],
        ),
        ("embinspect tokens model text --for", ["--format"]),
        ("embinspect diff a b --revision-", ["--revision-a", "--revision-b"]),
        ("embinspect --", ["--version", "--install-completion", "--show-completion", "--help"]),
    ],
    ids=["command", "commands", "undertrained", "option", "format-option", "diff-options", "root"],
)
def test_completes_commands_and_options(cli, line, offered):
    assert bash_complete(cli, line) == offered


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("embinspect tokens model text --format j", ["json", "jsonl"]),
        ("embinspect info model -f t", ["table", "tsv"]),
        ("embinspect neighbors model king --metric ", ["cosine", "dot", "l2"]),
        ("embinspect neighbors model king --pool f", ["first"]),
        ("embinspect stats model --table ", ["input", "output"]),
        ("embinspect neighbors model king --device c", ["cpu", "cuda"]),
        ("embinspect analogy model a b c --method ", ["add", "mul"]),
    ],
    ids=["format", "format-short", "metric", "pool", "table", "device", "method"],
)
def test_completes_choices(cli, line, offered):
    assert bash_complete(cli, line) == offered


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("embinspect info ", ["model.gguf", "models/", "notes.txt"]),
        ("embinspect info mo", ["model.gguf", "models/"]),
        ("embinspect info models/", ["models/glove.txt", "models/minilm/"]),
        ("embinspect info models/.", ["models/.hidden"]),
        ("embinspect info .s", [".secret"]),
        ("embinspect info nowhere/", []),
        ("embinspect info notes.txt/", []),
        ("embinspect diff model.gguf models/g", ["models/glove.txt"]),
        ("embinspect tokens models/minilm text --tokenizer models/m", ["models/minilm/"]),
        ("embinspect neighbors m k --cache-dir models/", ["models/glove.txt", "models/minilm/"]),
    ],
    ids=[
        "everything",
        "prefix",
        "in-a-folder",
        "hidden-when-asked",
        "hidden-here",
        "no-such-folder",
        "not-a-folder",
        "diff-model-b",
        "tokenizer",
        "cache-dir",
    ],
)
def test_completes_local_paths_for_model(cli, folder, line, offered):
    assert bash_complete(cli, line, cwd=folder) == offered


def test_completes_absolute_and_home_paths(cli, folder):
    assert bash_complete(cli, f"embinspect info {folder}/mod") == [
        f"{folder}/model.gguf",
        f"{folder}/models/",
    ]
    home = bash_complete(cli, "embinspect stats ~/models/", env={"HOME": str(folder)})
    assert home == ["~/models/glove.txt", "~/models/minilm/"]


@pytest.mark.parametrize(
    ("shell", "answer"),
    [
        ("zsh", '_arguments \'*: :(("model.gguf"\n"models/"))\'\n'),
        ("fish", "model.gguf\nmodels/\n"),
    ],
    ids=["zsh", "fish"],
)
def test_other_shells_get_the_same_paths(cli, folder, shell, answer):
    run = cli(
        env={
            "_EMBINSPECT_COMPLETE": f"complete_{shell}",
            "_TYPER_COMPLETE_ARGS": "embinspect info mo",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        },
        cwd=folder,
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, answer, "")


# Typer detects the shell it runs in (shellingham); a test names it instead.
CHOOSE_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_the_script(cli, shell):
    run = cli("--show-completion", shell, env=CHOOSE_SHELL)
    assert run.returncode == 0, run.stderr
    assert f"_EMBINSPECT_COMPLETE=complete_{shell}" in run.stdout
    # What the README puts in a shell's start-up file instead: the same script.
    sourced = cli(env={"_EMBINSPECT_COMPLETE": f"source_{shell}"})
    assert (sourced.returncode, sourced.stdout.strip()) == (0, run.stdout.strip())
    if shell == "bash":
        assert "complete -o default -F _embinspect_completion embinspect\n" in run.stdout


def test_install_completion_writes_under_home(cli, tmp_path):
    run = cli("--install-completion", "bash", env={"HOME": str(tmp_path), **CHOOSE_SHELL})
    assert run.returncode == 0, run.stderr
    script = tmp_path / ".bash_completions" / "embinspect.sh"
    assert "_EMBINSPECT_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


def test_unknown_shell_is_a_usage_error(cli):
    run = cli("--show-completion", "tcsh", env=CHOOSE_SHELL)
    assert run.returncode == EXIT_USAGE
    assert run.stderr.startswith("embinspect: error: ") and len(run.stderr.splitlines()) == 1


def test_completion_imports_nothing_heavy():
    """A completion runs on every Tab press: a path for MODEL costs no torch, no
    transformers, no tokenizers."""
    env = {"_EMBINSPECT_COMPLETE": "complete_bash", "COMP_WORDS": "embinspect info mo"}
    assert imported_heavy_modules(env={**env, "COMP_CWORD": "2"}) == []
