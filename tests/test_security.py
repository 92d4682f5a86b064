"""Nothing from a checkpoint is ever run, nothing in it is ever written, no token is shown.

Pickles here are armed: unpickling one creates a marker file (checked below, so a test
that finds no marker means something). Every command is run against each of them and
against the real fixtures, whose every byte is hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_errors import assert_one_line_error
from test_hub_cache import COMMIT, cache_repo

EXIT_MODEL = 3
SOURCE = Path(__file__).resolve().parent.parent / "embinspect"


class Planted:
    """Unpickling this calls open(marker, "w"): the file appears if anything unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def every_command(model) -> list[list[str]]:
    return [
        ["info", model],
        ["tokens", model, "king", "--positions", "--vectors"],
        ["neighbors", model, "king", "#5", "-k", "3", "--center"],
        ["compare", model, "king", "queen", "#5"],
        ["analogy", model, "king", "man", "woman", "--method", "mul"],
    ]


def test_the_planted_pickle_is_armed(tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Planted(probe)))
    assert probe.exists()


@pytest.fixture
def pickle_checkpoints(minilm, tmp_path):
    """Folders and files whose weights are armed pickles, and the marker they would create."""
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps({"embeddings.word_embeddings.weight": Planted(marker)}, protocol=2)

    def folder(name: str, weights: dict[str, bytes]) -> Path:
        path = tmp_path / name
        path.mkdir()
        for file in ("config.json", "tokenizer.json"):
            shutil.copyfile(minilm / file, path / file)
        for file, data in weights.items():
            (path / file).write_bytes(data)
        return path

    torch.save({"w": Planted(marker)}, tmp_path / "torch-save.bin")  # the zip torch writes
    zipped = (tmp_path / "torch-save.bin").read_bytes()
    index = json.dumps({"weight_map": {"embeddings.word_embeddings.weight": "model-1.safetensors"}})
    models = [
        folder("bin-only", {"pytorch_model.bin": zipped}),
        folder("pt-only", {"model.pt": payload}),
        folder("renamed", {"model.safetensors": payload}),
        folder("sharded", {"model.safetensors.index.json": index.encode(),
                           "model-1.safetensors": zipped}),
    ]  # fmt: skip
    models += [tmp_path / "bin-only" / "pytorch_model.bin", tmp_path / "pt-only" / "model.pt"]
    return models, marker


def test_pickles_are_refused_and_never_unpickled(cli, pickle_checkpoints):
    models, marker = pickle_checkpoints
    for model in models:
        for command in every_command(model):
            run = cli(*command)
            assert_one_line_error(run, EXIT_MODEL, "pickle", "never unpickles", ".safetensors")
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_ignored(cli, minilm, tmp_path):
    marker = tmp_path / "UNPICKLED"
    model = tmp_path / "model"
    model.mkdir()
    for file in ("config.json", "tokenizer.json", "model.safetensors"):
        shutil.copyfile(minilm / file, model / file)
    torch.save({"w": Planted(marker)}, model / "pytorch_model.bin")
    for command in every_command(model):
        run = cli(*command, "-f", "json")
        assert run.returncode == 0, run.stderr
    assert not marker.exists()


def test_a_pickle_in_the_hub_cache_is_refused(cli, minilm, tmp_path):
    marker = tmp_path / "UNPICKLED"
    torch.save({"w": Planted(marker)}, tmp_path / "pytorch_model.bin")
    files = {"config.json": minilm / "config.json"}
    files["pytorch_model.bin"] = tmp_path / "pytorch_model.bin"
    cache_repo(tmp_path / "hf", "test-org/pickled", files, COMMIT, "main")
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    run = cli("neighbors", "test-org/pickled", "king", env=env)
    assert_one_line_error(run, EXIT_MODEL, "test-org/pickled/pytorch_model.bin", "pickle")
    assert not marker.exists()


def test_remote_code_is_never_run(cli, minilm, tmp_path):
    """A tokenizer whose class lives in the checkpoint's own Python file (auto_map) needs
    trust_remote_code; embinspect never passes it, so the file is never imported."""
    marker = tmp_path / "REMOTE_CODE_RAN"
    model = tmp_path / "model"
    model.mkdir()
    for file in ("model.safetensors", "vocab.txt"):  # no tokenizer.json: transformers builds it
        shutil.copyfile(minilm / file, model / file)
    auto_map = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    config = {**json.loads((minilm / "config.json").read_text()), "auto_map": auto_map}
    (model / "config.json").write_text(json.dumps(config))
    (model / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": auto_map, "tokenizer_class": "EvilTokenizer"})
    )
    (model / "tokenization_evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import BertTokenizerFast as EvilTokenizer\n"
    )
    for command in every_command(model)[1:3]:  # tokens and neighbors load the tokenizer
        run = cli(*command)
        assert run.returncode == EXIT_MODEL, run.stderr
        assert "cannot build a tokenizer" in run.stderr and "Traceback" not in run.stderr
    assert not marker.exists()


def test_the_source_never_unpickles_or_trusts_remote_code():
    for path in SOURCE.glob("*.py"):
        text = path.read_text()
        for forbidden in ("import pickle", "torch.load", "weights_only", "trust_remote_code=True"):
            assert forbidden not in text, f"{path.name}: {forbidden}"
        for call in re.findall(r"from_pretrained\((?:[^()]|\([^()]*\))*\)", text):
            assert "trust_remote_code=False" in call, f"{path.name}: {call}"


TOKEN = "hf_" + "Secr3tT0kenForTests" * 2


def test_a_hub_token_is_never_shown(cli, tmp_path):
    env = {"HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    runs = [
        cli("info", TOKEN, env=env),  # a token pasted where MODEL goes
        cli("info", f"someone/{TOKEN}", env=env),
        cli("neighbors", "nobody/missing", "king", env=env),
        cli("info", tmp_path / TOKEN, env=env),
    ]
    for run in runs:
        assert run.returncode == EXIT_MODEL
        assert TOKEN not in run.stdout + run.stderr
        assert "Traceback" not in run.stderr
    assert runs[0].stderr.startswith("embinspect: error: ***: ")
    assert "not in the local Hugging Face cache" in runs[0].stderr
    # a token in the token file, not in the environment: still hidden by its hf_ shape
    env.pop("HF_TOKEN")
    pasted = cli("info", TOKEN, env=env)
    assert TOKEN not in pasted.stderr and "hf_***" in pasted.stderr


def fingerprint(*roots: Path) -> dict[str, tuple[int, str]]:
    """{path: (mode, sha256)} of every file and folder under ``roots``, but embinspect's
    own cache of Hub byte ranges and headers (``assets/embinspect``, the folder
    huggingface_hub's ``cached_assets_path`` gives a library; issue 6 asks for it)."""
    prints = {}
    for root in roots:
        own = root / "assets" / "embinspect"
        for path in sorted([root, *root.rglob("*")]):
            if path == own.parent or path == own or own in path.parents:
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            prints[str(path)] = (path.lstat().st_mode, digest)
    return prints


@pytest.mark.slow
def test_no_command_writes_into_a_checkpoint(cli, minilm, smollm2, gpt2, tmp_path):
    hf_home = tmp_path / "hf"
    files = {n: minilm / n for n in ("config.json", "model.safetensors", "tokenizer.json")}
    cache_repo(hf_home, "test-org/minilm", files, COMMIT, "main")
    before = fingerprint(minilm, smollm2, gpt2, hf_home)
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    commands = every_command(minilm)
    for model in (smollm2, gpt2):
        commands += [c for c in every_command(model) if c[0] in {"info", "tokens", "neighbors"}]
    commands += [c for c in every_command("test-org/minilm") if c[0] in {"info", "neighbors"}]
    for command in commands:
        run = cli(*command, "-f", "json", env=env)
        assert run.returncode == 0, (command, run.stderr)
    assert fingerprint(minilm, smollm2, gpt2, hf_home) == before


# ---------------------------------------------------------------------------------------
# Terminal output: nothing from outside reaches a terminal raw, nothing is read as markup

# Each hostile string; how a table, TSV or CSV cell shows it (embinspect.text: every
# unprintable character an escape, a backslash doubled); and how a message on stderr shows
# it where it names a file or a tensor (one line: CR a space; backslashes as they are).
# None holds "/" or a space, so each can be a file name and an entry of a vocabulary that
# splits on spaces.
CONTROL = {
    "esc_colour": ("\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m"),
    "cursor_moves": ("\x1b[2J\x1b[1;1Hgone", r"\x1b[2J\x1b[1;1Hgone", r"\x1b[2J\x1b[1;1Hgone"),
    "osc8_hyperlink": (
        "\x1b]8;;https:evil.example\x1b\\click\x1b]8;;\x1b\\",
        r"\x1b]8;;https:evil.example\x1b\\click\x1b]8;;\x1b\\",
        r"\x1b]8;;https:evil.example\x1b\click\x1b]8;;\x1b" + "\\",
    ),
    "osc52_clipboard": (
        "\x1b]52;c;ZWNobyBwd25lZA==\x07",
        r"\x1b]52;c;ZWNobyBwd25lZA==\x07",
        r"\x1b]52;c;ZWNobyBwd25lZA==\x07",
    ),
    "bel": ("ding\x07", r"ding\x07", r"ding\x07"),
    "backspace": (
        "good\x08\x08\x08\x08evil",
        r"good\x08\x08\x08\x08evil",
        r"good\x08\x08\x08\x08evil",
    ),
    "carriage_return": ("safe\rEVIL", r"safe\rEVIL", "safe EVIL"),
    "bidi_override": ("abc\u202edef", r"abc\u202edef", r"abc\u202edef"),
    "c1_csi": ("\x9b31mred", r"\u009b31mred", r"\u009b31mred"),
}
MARKUP = {
    "bert_unused": "[unused0]",
    "closing_tag": "[/x]",
    "bold_tags": "[bold]x[/bold]",
    "emoji_code": ":smile:",
}
FORMULAS = {
    "dde_command": "=cmd|' /C calc'!A0",
    "plus": "+1",
    "minus": "-",
    "at_sum": "@SUM(1)",
    "equals": "=",
}
VOCAB = ["king", "queen", *(raw for raw, _, _ in CONTROL.values()), *MARKUP.values(),
         *FORMULAS.values()]  # fmt: skip
EVERY_ROW = str(len(VOCAB) - 1)  # -k that lists every other row
EXIT_USAGE, EXIT_QUERY = 2, 4
DELIMITED = ("table", "tsv", "csv")


def assert_terminal_safe(text: str, allowed: str = "\n") -> None:
    """No character a terminal acts on: all printable (``str.isprintable``) but ``allowed``
    (a run's output is read with universal newlines: a raw CR would be a line break)."""
    raw = sorted({f"U+{ord(c):04X}" for c in text if not c.isprintable() and c not in allowed})
    assert raw == [], text


def write_model(folder: Path, vocab: list[str] = VOCAB, seed: int = 0) -> Path:
    """A small BERT-named checkpoint (token and position tables, f32) whose tokenizer.json
    is a word-level vocabulary of ``vocab``, split on spaces only."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tables = {
        "embeddings.word_embeddings.weight": rng.standard_normal((len(vocab), 8)),
        "embeddings.position_embeddings.weight": rng.standard_normal((6, 8)),
    }
    save_file({k: v.astype(np.float32) for k, v in tables.items()}, folder / "model.safetensors")
    split = {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": False}
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": split, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(vocab)},
                  "unk_token": "king"},
    }  # fmt: skip
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    return folder


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("hostile") / "model")


def squeezed(text: str) -> str:
    """``text`` without its white space: a long title wraps."""
    return "".join(text.split())


def rows_of(run) -> list[list[str]]:
    return [line.split("\t") for line in run.stdout.splitlines()[1:]]


@pytest.mark.parametrize("case", CONTROL)
def test_control_characters_in_token_strings(cli, hostile_model, case):
    raw, shown, line = CONTROL[case]
    for fmt in DELIMITED:
        for args in (["neighbors", "king", "-k", EVERY_ROW], ["tokens", raw]):
            run = cli(args[0], hostile_model, *args[1:], "-f", fmt)
            assert run.returncode == 0, run.stderr
            assert shown in run.stdout, (fmt, args)
            assert_terminal_safe(run.stdout, "\n\t" if fmt == "tsv" else "\n")
            assert_terminal_safe(run.stderr)
    tsv = cli("tokens", hostile_model, raw, "-f", "tsv")
    assert rows_of(tsv)[0][2:4] == [shown, shown]  # token and text cells
    table = cli("tokens", hostile_model, raw, "-f", "table").stdout
    assert f'"{shown}"' in table  # the text column, quoted
    answer = cli("neighbors", hostile_model, "king", "-k", EVERY_ROW, "-f", "json").json()[0]
    assert raw in [n["token"] for n in answer["neighbors"]]  # JSON keeps the exact string
    lines = cli("neighbors", hostile_model, "king", "-k", EVERY_ROW, "-f", "jsonl")
    assert_terminal_safe(lines.stdout)
    assert raw in [n["token"] for n in lines.jsonl()[0]["neighbors"]]


@pytest.mark.parametrize("case", CONTROL)
def test_control_characters_in_gguf_metadata(cli, tmp_path, case):
    from gguf import GGUFWriter

    raw, shown, line = CONTROL[case]
    path = tmp_path / "model.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_name(raw)
    writer.add_string("tokenizer.ggml.model", raw)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for fmt in DELIMITED:
        run = cli("info", path, "-f", fmt)
        assert run.returncode == 0, run.stderr
        assert_terminal_safe(run.stdout, "\n\t" if fmt == "tsv" else "\n")
        assert_terminal_safe(run.stderr)
        if fmt == "table":
            assert f"architecture  llama ({shown})" in run.stdout
        else:
            sep = "\t" if fmt == "tsv" else ","
            assert f"gguf.name{sep}{shown}" in run.stdout.splitlines()
            assert f"gguf.tokenizer{sep}{shown}" in run.stdout.splitlines()
    document = cli("info", path, "-f", "json").json()
    assert document["gguf"]["name"] == raw and document["gguf"]["tokenizer"] == raw


@pytest.mark.parametrize("case", CONTROL)
def test_control_characters_in_file_and_folder_names(cli, hostile_model, tmp_path, case):
    raw, shown, line = CONTROL[case]
    folder = tmp_path / raw
    shutil.copytree(hostile_model, folder)
    for fmt in DELIMITED:
        run = cli("info", folder, "-f", fmt)
        assert run.returncode == 0, run.stderr
        assert squeezed(f"{tmp_path}/{shown}") in squeezed(run.stdout)  # a title may wrap
        assert_terminal_safe(run.stdout, "\n\t" if fmt == "tsv" else "\n")
    assert cli("info", folder, "-f", "json").json()["model"] == str(folder)
    empty = tmp_path / f"empty{raw}"
    empty.mkdir()
    run = cli("neighbors", empty, "king")
    assert_one_line_error(run, 3, f"{tmp_path}/empty{line}: no .safetensors weights")
    assert_terminal_safe(run.stderr)
    missing = cli("info", tmp_path / f"gone{raw}.safetensors")
    assert missing.returncode == 3 and f"gone{line}.safetensors" in missing.stderr
    assert_terminal_safe(missing.stderr)


@pytest.mark.parametrize("case", CONTROL)
def test_control_characters_in_index_entries_and_tensor_names(cli, hostile_model, tmp_path, case):
    """A shard file named by the index, and the token table's own name, both hostile."""
    from safetensors.numpy import load_file, save_file

    raw, shown, line = CONTROL[case]
    folder = tmp_path / "sharded"
    folder.mkdir()
    tensors = load_file(hostile_model / "model.safetensors")
    name = f"emb{raw}"
    # A shard name with a backslash is refused (see the next test).
    shard, shard_shown = (
        (f"{raw}.safetensors", shown) if "\\" not in raw else ("s.safetensors", "s")
    )
    save_file({name: tensors["embeddings.word_embeddings.weight"]}, folder / shard)
    index = {"metadata": {}, "weight_map": {name: shard}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copyfile(hostile_model / "tokenizer.json", folder / "tokenizer.json")
    for fmt in DELIMITED:
        run = cli("info", folder, "--tensor", name, "-f", fmt)
        assert run.returncode == 0, run.stderr
        assert f"emb{shown}" in run.stdout and f"{shard_shown}.safetensors" in run.stdout
        assert_terminal_safe(run.stdout, "\n\t" if fmt == "tsv" else "\n")
        assert_terminal_safe(run.stderr)
    tensor = cli("info", folder, "--tensor", name, "-f", "json").json()["tensors"][0]
    assert (tensor["name"], tensor["file"]) == (name, shard)
    wrong = cli("neighbors", folder, "king", "--tensor", f"no{raw}")
    assert_one_line_error(wrong, 3, f"--tensor no{line}: no tensor of that name")
    assert_terminal_safe(wrong.stderr)


def test_a_shard_name_with_a_backslash_is_refused_in_one_safe_line(cli, hostile_model, tmp_path):
    raw = CONTROL["osc8_hyperlink"][0]
    shutil.copyfile(hostile_model / "model.safetensors", tmp_path / f"{raw}.safetensors")
    index = {"weight_map": {f"emb{raw}": f"{raw}.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    run = cli("info", tmp_path)
    escaped = r"\x1b]8;;https:evil.example\x1b\\click\x1b]8;;\x1b\\"  # repr's quoting
    assert_one_line_error(
        run, 3, f"bad shard name '{escaped}.safetensors' for tensor 'emb{escaped}'"
    )
    assert_terminal_safe(run.stderr)


@pytest.mark.parametrize("case", CONTROL)
def test_control_characters_in_queries_echoed_back(cli, hostile_model, case):
    raw, shown, line = CONTROL[case]
    missing = f"=no{raw}"
    message = f"embinspect: error: {missing!r}: no vocabulary entry spelled exactly so\n"
    for fmt in DELIMITED:
        run = cli("neighbors", hostile_model, f"={raw}", missing, "-k", "2", "-f", fmt)
        assert run.returncode == EXIT_QUERY
        assert run.stderr == message  # the query quoted with Python's escapes
        assert_terminal_safe(run.stdout, "\n\t" if fmt == "tsv" else "\n")
        assert_terminal_safe(run.stderr)
        if fmt == "table":
            title = squeezed(run.stdout.split("┏")[0])  # a long title wraps
            assert title.startswith(squeezed(f"Neighbors of '={shown}' = {shown} #"))
        else:
            error_row = run.stdout.splitlines()[-1].split("\t" if fmt == "tsv" else ",")
            quote = "'" if fmt == "csv" else ""  # a cell that starts with = is quoted in CSV
            assert error_row[0] == f"{quote}=no{shown}"
    answers = cli("neighbors", hostile_model, f"={raw}", missing, "-f", "json")
    assert [a["query"] for a in json.loads(answers.stdout)] == [f"={raw}", missing]
    compare = cli("compare", hostile_model, f"={raw}", "king", "-f", "table")
    assert compare.returncode == 0 and f"'={shown}' = {shown} #" in compare.stdout
    assert_terminal_safe(compare.stdout)


@pytest.mark.parametrize("case", MARKUP)
def test_markup_in_vocabulary_entries_and_queries_is_printed_literally(
    cli, hostile_model, tmp_path, case
):
    entry = MARKUP[case]
    index = VOCAB.index(entry)
    neighbors = cli("neighbors", hostile_model, "king", "-k", EVERY_ROW, "-f", "table")
    assert f"│ {entry} " in neighbors.stdout
    compare = cli("compare", hostile_model, f"={entry}", entry, "king", "-f", "table")
    assert compare.returncode == 0, compare.stderr
    lines = compare.stdout.splitlines()
    assert f"'={entry}' = {entry} #{index}" in lines and f"'{entry}' = {entry} #{index}" in lines
    assert f" ={entry} " in lines[2]  # a column header
    analogy = cli("analogy", hostile_model, entry, "queen", "king", "-k", "2", "-f", "table")
    assert analogy.returncode == 0, analogy.stderr
    assert analogy.stdout.startswith(f"{entry} − queen + king ≈ ?")
    assert f"'{entry}' = {entry} #{index}" in analogy.stdout.splitlines()
    folder = tmp_path / entry
    shutil.copytree(hostile_model, folder)
    info = cli("info", folder, "-f", "table")
    assert info.returncode == 0
    assert info.stdout.splitlines()[0].rstrip() == f"Embedding tensors of {folder}"
    missing = cli("neighbors", hostile_model, f"={entry}!", "-f", "table")
    assert missing.returncode == EXIT_QUERY and f"={entry}!: no vocabulary entry" in missing.stderr


def csv_cells(run) -> list[list[str]]:
    import csv
    import io

    return list(csv.reader(io.StringIO(run.stdout)))


@pytest.mark.parametrize("case", FORMULAS)
def test_csv_formula_cells_are_neutralised(cli, hostile_model, case):
    entry = FORMULAS[case]
    quoted = csv_cells(cli("neighbors", hostile_model, "king", "-k", EVERY_ROW, "-f", "csv"))
    raw = csv_cells(
        cli("neighbors", hostile_model, "king", "-k", EVERY_ROW, "-f", "csv", "--csv-raw")
    )
    assert quoted[0] == raw[0] == ["query", "query_ids", "rank", "token_id", "token", "cosine",
                                   "error"]  # fmt: skip
    token_id = str(VOCAB.index(entry))
    assert [r[4] for r in quoted[1:] if r[3] == token_id] == ["'" + entry]
    assert [r[4] for r in raw[1:] if r[3] == token_id] == [entry]
    # numbers are never quoted: a negative score stays a number
    scores = [r[5] for r in quoted[1:]]
    assert any(s.startswith("-") for s in scores) and [float(s) for s in scores]
    # a query is outside text too
    asked = csv_cells(cli("neighbors", hostile_model, f"={entry}", "-k", "1", "-f", "csv"))
    assert asked[1][:2] == ["'=" + entry, token_id]
    asked_raw = cli("neighbors", hostile_model, f"={entry}", "-k", "1", "-f", "csv", "--csv-raw")
    assert csv_cells(asked_raw)[1][:2] == ["=" + entry, token_id]
    tsv = cli("neighbors", hostile_model, "king", "-k", EVERY_ROW, "-f", "tsv")
    assert [r[4] for r in rows_of(tsv) if r[3] == token_id] == [entry]  # TSV is for scripts


def test_csv_raw_goes_with_the_csv_format(cli, hostile_model):
    for fmt in ("table", "tsv", "json"):
        run = cli("neighbors", hostile_model, "king", "-f", fmt, "--csv-raw")
        assert_one_line_error(run, EXIT_USAGE, "--csv-raw goes with --format csv")


def test_csv_still_escapes_control_characters_when_raw(cli, hostile_model):
    run = cli("neighbors", hostile_model, "king", "-k", EVERY_ROW, "-f", "csv", "--csv-raw")
    assert_terminal_safe(run.stdout)
    assert all(shown in run.stdout for _, shown, _ in CONTROL.values())


def test_a_hub_token_in_a_hostile_message_is_still_hidden(cli, hostile_model):
    query = f"={TOKEN}\x1b[2J"
    run = cli("neighbors", hostile_model, query, "-f", "tsv", env={"HF_TOKEN": TOKEN})
    assert run.returncode == EXIT_QUERY and TOKEN not in run.stderr
    assert (
        run.stderr == "embinspect: error: '=***\\x1b[2J': no vocabulary entry spelled exactly so\n"
    )
    shaped = cli("neighbors", hostile_model, query, "-f", "tsv")  # no HF_TOKEN: by its shape
    assert "'=hf_***\\x1b[2J': no vocabulary entry" in shaped.stderr
    assert TOKEN not in shaped.stderr


def test_a_usage_error_line_is_terminal_safe(cli, hostile_model):
    run = cli("neighbors", hostile_model, "king", "--metric", "\x1b[31mx\u202e\x9b")
    assert_one_line_error(run, EXIT_USAGE, "'\\x1b[31mx\\u202e\\x9b' is not one of")  # repr's
    assert_terminal_safe(run.stderr)


def test_an_internal_error_line_is_terminal_safe(cli, hostile_model, monkeypatch):
    import embinspect.analyses.info

    def broken(checkpoint):
        raise RuntimeError(f"boom\x1b[2J\rover\nnext\u202e {TOKEN}")

    monkeypatch.setattr(embinspect.analyses.info, "inspect_checkpoint", broken)
    run = cli("info", hostile_model)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == (
        "embinspect: internal error: RuntimeError: boom\\x1b[2J over next\\u202e hf_*** "
        "(EMBINSPECT_DEBUG=1 shows the traceback)\n"
    )


FOLDER, FOLDER_SHOWN = "h\x1b[31m[/x]:smile:\u202e", r"h\x1b[31m[/x]:smile:\u202e"


@pytest.fixture(scope="module")
def hostile_pair(tmp_path_factory) -> tuple[Path, Path]:
    """Two checkpoints of the hostile vocabulary in a folder named with ESC, markup, an emoji
    code and a bidi override; B's rows differ from A's."""
    root = tmp_path_factory.mktemp("pair") / FOLDER
    return write_model(root / "a"), write_model(root / "b", seed=1)


# command: (arguments, what its table shows; {A} and {B} stand for the folders as shown)
TABLE_VIEWS = {
    "info": (["info", "A"], ["Embedding tensors of {A}"]),
    "tokens": (
        ["tokens", "A", "king [/x] queen", "--positions", "--vectors"],
        ["embeddings.word_embeddings.weight of {A}", '│ [/x]  │ "[/x]"  │'],
    ),
    "neighbors": (
        ["neighbors", "A", "king", "-k", EVERY_ROW],
        [f"│ {shown} " for _, shown, _ in CONTROL.values()]
        + [f"│ {entry} " for entry in MARKUP.values()],
    ),
    "compare": (
        ["compare", "A", "king", "=[unused0]", "[/x]"],
        ["┃ =[unused0] ┃", "'=[unused0]' = [unused0] #11", "'[/x]' = [/x] #12"],
    ),
    "analogy": (
        ["analogy", "A", "king", "[/x]", "=:smile:", "-k", "3"],
        ["king − [/x] + =:smile: ≈ ?   (3CosAdd)", "'=:smile:' = :smile: #14"],
    ),
    "positions": (["positions", "A"], ["Learned positions of {A}: embeddings.position_embeddings"]),
    "diff": (
        ["diff", "A", "B", "-k", EVERY_ROW],
        [
            "{A}: embeddings.word_embeddings.weight",
            "{B}: embeddings.word_embeddings.weight",
            "│ [bold]x[/bold] ",
            r"│ \x1b[2J\x1b[1;1Hgone ",
        ],
    ),  # fmt: skip
    "stats": (["stats", "A"], ["embeddings.word_embeddings.weight of {A}"]),
    "undertrained": (
        ["undertrained", "A", "--reference", "[unused0]", "-k", EVERY_ROW],
        [
            "Likely under-trained tokens of embeddings.word_embeddings.weight ({A})",
            '│ "[bold]x[/bold]" ',
            '│ ":smile:" ',
            r'│ "\u009b31mred" ',
        ],
    ),  # fmt: skip
    "plot": (
        ["plot", "A", "king", "=[bold]x[/bold]", "--neighbors", "2"],
        ['│ "=[bold]x[/bold]" ', '│ "king" '],
    ),
}


@pytest.mark.parametrize("command", TABLE_VIEWS)
def test_every_table_view_is_terminal_safe(cli, hostile_pair, command):
    a, b = hostile_pair
    args, fragments = TABLE_VIEWS[command]
    run = cli(*[{"A": a, "B": b}.get(arg, arg) for arg in args], "-f", "table")
    assert run.returncode == 0, run.stderr
    assert_terminal_safe(run.stdout)
    assert_terminal_safe(run.stderr)
    root = a.parents[2]  # FOLDER holds a "/" (in [/x])
    folders = {"A": f"{root}/{FOLDER_SHOWN}/a", "B": f"{root}/{FOLDER_SHOWN}/b"}
    for fragment in fragments:
        expected = fragment.format(**folders)
        if "│" in expected or "┃" in expected:
            assert expected in run.stdout, (command, expected)
        else:  # a title or a summary line may wrap
            assert squeezed(expected) in squeezed(run.stdout), (command, expected)


def test_the_cli_never_parses_data_as_markup():
    """Only render.py talks to Rich's text and markup: views hand the console plain
    strings, which it escapes and never reads as markup."""
    for path in (SOURCE / "cli").glob("*.py"):
        text = path.read_text()
        if path.name != "render.py":
            assert "rich.markup" not in text and "rich.text" not in text, path.name
            assert "[/" not in text, path.name  # no markup of our own either
