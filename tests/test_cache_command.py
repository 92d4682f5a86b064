"""``embinspect cache ls | rm | prune | path``, on real entries each test makes in its own
cache folders: a GGUF tokenizer derived from a tiny GGUF (``tokens``), and the byte range
and headers of a small checkpoint fetched from the loopback Hub (``hub_server.FakeHub``).
Every run points ``EMBINSPECT_CACHE`` and ``HF_HOME`` into ``tmp_path``: the shared cache
is never touched."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import _cli_env, read_terminal
from hub_server import FakeHub
from safetensors.numpy import save_file
from test_gguf import write_tiny_gguf

EXIT_USAGE = 2
TABLE = "model.embed_tokens.weight"
LISTED = ["id", "kind", "model", "revision", "file", "tensor", "size", "written", "state"]
ENTRY_KEYS = [*LISTED, "reason", "paths"]
TOKENS = ["<unk>", "<s>", "</s>", "k", "i", "n", "g", "Ġ", "in", "ing", "king", "Ġking"]
MERGES = ["i n", "in g", "k ing", "Ġ king"]


# --- entries ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    """A Llama-layout checkpoint whose 2 KB token table sits beside a 16 KB tensor in one
    file, so that the table comes from the Hub as a byte range."""
    root = tmp_path_factory.mktemp("tiny-repo")
    rng = np.random.default_rng(0)
    tensors = {
        TABLE: rng.standard_normal((64, 8), dtype=np.float32),
        "model.layers.0.mlp.up_proj.weight": np.zeros((64, 64), dtype=np.float32),
    }
    save_file(tensors, str(root / "model.safetensors"))
    config = {"model_type": "llama", "hidden_size": 8, "tie_word_embeddings": True}
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def fake_hub(tiny_repo):
    hub = FakeHub().start()
    commit = hub.add("test-org/tiny", tiny_repo)
    hub.commit = commit
    yield hub
    hub.stop()


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """This test's own caches: embinspect's, and huggingface_hub's (its assets too)."""
    return {
        "EMBINSPECT_CACHE": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ASSETS_CACHE": str(tmp_path / "hf" / "assets"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_TOKEN": "",
        "HF_HUB_OFFLINE": "",
        "TRANSFORMERS_OFFLINE": "",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def write_gguf(path: Path, tokens: list[str] = TOKENS) -> Path:
    """A small F32 GGUF whose metadata holds a GPT-2-style tokenizer (converted in
    milliseconds)."""
    return write_tiny_gguf(path, tokens, MERGES)


def derive_tokenizer(cli, gguf: Path, env) -> Path:
    """Run ``tokens`` on the GGUF: its tokenizer is converted and kept; the entry's file."""
    folder = Path(env["EMBINSPECT_CACHE"]) / "gguf-tokenizers"
    before = set(folder.iterdir()) if folder.exists() else set()
    run = cli("tokens", gguf, "king", "-f", "json", env=env)
    assert run.returncode == 0, run.stderr
    [entry] = set(folder.iterdir()) - before
    return entry


def fetch_range(cli, env, hub) -> Path:
    """Run ``neighbors`` on the Hub repo: its table's bytes come as a range; the range file."""
    hub.reset()
    hub_env = {**env, "HF_ENDPOINT": hub.url}
    run = cli("neighbors", "test-org/tiny", "#1", "-k", "2", "-f", "json", env=hub_env)
    assert run.returncode == 0, run.stderr
    [range_file] = commit_folder(env, hub).glob("tensors/*/*")
    return range_file


def commit_folder(env, hub) -> Path:
    return Path(env["HF_ASSETS_CACHE"]) / "embinspect" / "models--test-org--tiny" / hub.commit


def listing(cli, env) -> dict:
    return cli("cache", "ls", "-f", "json", env=env).json()


def by_kind(document: dict) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for entry in document["entries"]:
        kinds.setdefault(entry["kind"], []).append(entry)
    return kinds


def written(path: Path) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))


def files_under(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


# --- ls -----------------------------------------------------------------------------------


def test_ls_lists_each_entry_with_its_size_model_and_time(cli, env, fake_hub, tmp_path):
    gguf = write_gguf(tmp_path / "tiny.gguf")
    tokenizer = derive_tokenizer(cli, gguf, env)
    range_file = fetch_range(cli, env, fake_hub)
    folder = commit_folder(env, fake_hub)
    metadata = sorted([folder / "files.json", *folder.glob("headers/*")])
    assert [p.name for p in metadata] == ["files.json", "model.safetensors.header"]

    document = listing(cli, env)
    assert list(document) == ["cache_dir", "hub_dir", "size", "entries"]
    assert document["cache_dir"] == env["EMBINSPECT_CACHE"]
    assert document["hub_dir"] == str(Path(env["HF_ASSETS_CACHE"]).resolve() / "embinspect")
    entries = document["entries"]
    assert [list(e) for e in entries] == [ENTRY_KEYS] * 3
    ids = [e["id"] for e in entries]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids) and len(set(ids)) == 3
    headers, ranged, derived = entries
    commit = fake_hub.commit
    assert {k: v for k, v in headers.items() if k != "id"} == {
        "kind": "headers", "model": "test-org/tiny", "revision": commit, "file": None,
        "tensor": None, "size": sum(p.stat().st_size for p in metadata),
        "written": max(written(p) for p in metadata), "state": "ok", "reason": None,
        "paths": [str(folder / "files.json"), str(folder / "headers" / "model.safetensors.header")],
    }  # fmt: skip
    assert {k: v for k, v in ranged.items() if k != "id"} == {
        "kind": "range", "model": "test-org/tiny", "revision": commit,
        "file": "model.safetensors", "tensor": TABLE, "size": range_file.stat().st_size,
        "written": written(range_file), "state": "ok", "reason": None,
        "paths": [str(range_file)],
    }  # fmt: skip
    assert {k: v for k, v in derived.items() if k != "id"} == {
        "kind": "tokenizer", "model": str(gguf), "revision": None, "file": None,
        "tensor": None, "size": tokenizer.stat().st_size, "written": written(tokenizer),
        "state": "ok", "reason": None, "paths": [str(tokenizer)],
    }  # fmt: skip
    assert document["size"] == sum(e["size"] for e in entries)
    # Everything embinspect wrote is in some entry, and nothing else is.
    listed = {Path(p) for e in entries for p in e["paths"]}
    assert listed == files_under(Path(env["EMBINSPECT_CACHE"]), folder.parent.parent)

    tsv = cli("cache", "ls", env=env)
    lines = tsv.stdout.splitlines()
    assert lines[0].split("\t") == [*LISTED, "reason"]
    rows = [line.split("\t") for line in lines[1:]]
    assert rows == [[str(e[c]) if e[c] is not None else "" for c in LISTED] + [""] for e in entries]
    rows_csv = list(csv.reader(io.StringIO(cli("cache", "ls", "-f", "csv", env=env).stdout)))
    assert rows_csv == [lines[0].split("\t"), *rows]
    records = cli("cache", "ls", "-f", "jsonl", env=env).jsonl()
    assert records == entries
    table = cli("cache", "ls", "-f", "table", env={**env, "COLUMNS": "250"}).stdout
    lines = table.splitlines()
    model = f"test-org/tiny@{commit[:8]}"
    parts = [(model, "file list, headers"), (model, f"{TABLE} (model.safetensors)")]
    parts.append((str(gguf), "tokenizer"))
    for entry, (shown_model, part) in zip(entries, parts, strict=True):
        [line] = [line for line in lines if entry["id"] in line]
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        minute = entry["written"][:16].replace("T", " ")
        assert cells == [
            entry["id"],
            entry["kind"],
            shown_model,
            part,
            f"{entry['size']:,}",
            minute,
            "ok",
        ]
    assert lines[-1] == (
        f"3 entries, {document['size']:,} bytes, in {document['cache_dir']} and "
        f"{document['hub_dir']}"
    )


def test_ls_of_an_empty_cache(cli, env):
    assert cli("cache", "ls", env=env).stdout == "\t".join([*LISTED, "reason"]) + "\n"
    document = listing(cli, env)
    assert (document["entries"], document["size"]) == ([], 0)
    assert "The cache is empty" in cli("cache", "ls", "-f", "table", env=env).stdout


def test_ls_leaves_out_files_embinspect_did_not_write(cli, env, tmp_path):
    """EMBINSPECT_CACHE pointed at a folder of other files: none of them is an entry."""
    cache = Path(env["EMBINSPECT_CACHE"])
    (cache / "notes").mkdir(parents=True)
    (cache / "notes" / "todo.txt").write_text("mine")
    (cache / "model.gguf").write_bytes(b"GGUF")
    (cache / "gguf-tokenizers").mkdir()
    (cache / "gguf-tokenizers" / "link.tokenizer.json").symlink_to(cache / "model.gguf")
    assert listing(cli, env)["entries"] == []
    assert cli("cache", "rm", "--all", "--yes", "-f", "json", env=env).json()["removed"] == []
    assert sorted(p.name for p in cache.rglob("*")) == [
        "gguf-tokenizers", "link.tokenizer.json", "model.gguf", "notes", "todo.txt",
    ]  # fmt: skip


HOSTILE_PATH = "evil\x1b]52;c;aGk=\x07\u202e.gguf"


def test_ls_escapes_a_hostile_source_path(cli, env, tmp_path):
    gguf = write_gguf(tmp_path / HOSTILE_PATH)
    derive_tokenizer(cli, gguf, env)
    assert [e["model"] for e in listing(cli, env)["entries"]] == [str(gguf)]
    for fmt in ("table", "tsv", "csv"):
        out = cli("cache", "ls", "-f", fmt, env={**env, "COLUMNS": "300"}).stdout
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, fmt
        assert "evil\\x1b]52;c;aGk=\\x07\\u202e.gguf" in out, fmt
    raw = cli("cache", "ls", "-f", "json", env=env).stdout
    assert "\x1b" not in raw and "\\u001b" in raw and "\\u202e" in raw


# --- rm -----------------------------------------------------------------------------------


def test_rm_one_entry_removes_exactly_its_files(cli, env, fake_hub, tmp_path):
    derive_tokenizer(cli, write_gguf(tmp_path / "tiny.gguf"), env)
    range_file = fetch_range(cli, env, fake_hub)
    roots = (Path(env["EMBINSPECT_CACHE"]), Path(env["HF_ASSETS_CACHE"]))
    before = files_under(*roots)
    [ranged] = by_kind(listing(cli, env))["range"]
    run = cli("cache", "rm", ranged["id"], "-f", "json", env=env)
    assert run.json() == {"dry_run": False, "size": ranged["size"], "removed": [ranged]}
    assert files_under(*roots) == before - {range_file}
    assert not range_file.parent.exists()  # the folder it left empty goes too
    assert [e["kind"] for e in listing(cli, env)["entries"]] == ["headers", "tokenizer"]
    # By the first characters of its id, in a pipe: the removed entry's row, a note.
    [derived] = by_kind(listing(cli, env))["tokenizer"]
    run = cli("cache", "rm", derived["id"][:6], env=env)
    assert run.returncode == 0
    assert run.stdout.splitlines()[1].split("\t")[:2] == [derived["id"], "tokenizer"]
    assert run.stderr == f"embinspect: note: removed 1 entry, {derived['size']:,} bytes\n"
    assert [e["kind"] for e in listing(cli, env)["entries"]] == ["headers"]


@pytest.mark.parametrize(
    "ids, message",
    [
        (["0123456789ab"], "no cache entry has the id '0123456789ab'"),
        (["abc"], "no cache entry has the id 'abc' (give at least 4 characters of one)"),
        (["\x1b[2J"], "no cache entry has the id '\\x1b[2J'"),
    ],
    ids=["unknown-id", "too-short", "escape-sequence"],
)
def test_rm_of_an_id_that_names_no_entry_removes_nothing(cli, env, tmp_path, ids, message):
    entry = derive_tokenizer(cli, write_gguf(tmp_path / "tiny.gguf"), env)
    run = cli("cache", "rm", *ids, env=env)
    assert (run.returncode, run.stdout) == (EXIT_USAGE, "")
    assert run.stderr == f"embinspect: error: {message}\n"
    assert entry.exists()


def test_rm_of_a_file_that_cannot_be_removed_is_one_line(cli, env, tmp_path, monkeypatch):
    entry = derive_tokenizer(cli, write_gguf(tmp_path / "tiny.gguf"), env)
    [listed] = listing(cli, env)["entries"]

    def refused(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refused)
    run = cli("cache", "rm", listed["id"], env=env)
    assert (run.returncode, run.stdout) == (3, "")
    assert run.stderr == (
        f"embinspect: error: {entry}: cannot remove it from the cache (Permission denied)\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give the ids of the entries to remove (cache ls shows them), or --all"),
        (["--all", "0123456789ab"], "give the ids of the entries to remove, or --all, not both"),
    ],
    ids=["neither", "both"],
)
def test_rm_needs_ids_or_all(cli, env, args, message):
    run = cli("cache", "rm", *args, env=env)
    assert (run.returncode, run.stderr) == (EXIT_USAGE, f"embinspect: error: {message}\n")


def test_rm_all_without_yes_refuses_when_stdin_is_not_a_terminal(cli, env, tmp_path):
    entry = derive_tokenizer(cli, write_gguf(tmp_path / "tiny.gguf"), env)
    size = entry.stat().st_size
    run = cli("cache", "rm", "--all", env=env, input="y\n")
    assert (run.returncode, run.stdout) == (EXIT_USAGE, "")
    assert run.stderr == (
        f"embinspect: error: cache rm --all would remove 1 entry ({size:,} bytes), and "
        "stdin is not a terminal to confirm on: pass --yes\n"
    )
    assert entry.exists()
    done = cli("cache", "rm", "--all", "--yes", "-f", "json", env=env).json()
    assert [e["paths"] for e in done["removed"]] == [[str(entry)]]
    assert files_under(Path(env["EMBINSPECT_CACHE"])) == set()


@pytest.mark.parametrize(
    "answer, removed", [("y\n", True), ("\n", False), ("no\n", False)], ids=["yes", "enter", "no"]
)
def test_rm_all_asks_at_a_terminal(cli, env, tmp_path, answer, removed):
    """stdin and stderr a terminal: the question on stderr, the answer read from stdin."""
    entry = derive_tokenizer(cli, write_gguf(tmp_path / "tiny.gguf"), env)
    leader, follower = pty.openpty()
    os.write(leader, answer.encode())  # typed ahead: the terminal holds it for the read
    child = subprocess.Popen(
        [sys.executable, "-m", "embinspect", "cache", "rm", "--all", "-f", "json"],
        env=_cli_env(env),
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    shown = read_terminal(leader)
    out = child.stdout.read()
    assert child.wait(timeout=120) == 0
    size = entry.stat().st_size if entry.exists() else json.loads(out)["size"]
    question = f"Remove 1 entry ({size:,} bytes) from embinspect's cache? [y/N] "
    assert question.encode() in shown
    assert entry.exists() is not removed
    if removed:
        assert [e["paths"] for e in json.loads(out)["removed"]] == [[str(entry)]]
    else:
        assert out == b"" and b"embinspect: note: nothing removed" in shown


# --- prune --------------------------------------------------------------------------------


def test_prune_removes_exactly_the_entries_whose_source_vanished_or_changed(cli, env, tmp_path):
    kept = write_gguf(tmp_path / "kept.gguf")
    vanished = write_gguf(tmp_path / "vanished.gguf", TOKENS + ["q"])
    changed = write_gguf(tmp_path / "changed.gguf", TOKENS + ["u"])
    touched = write_gguf(tmp_path / "touched.gguf", TOKENS + ["e"])
    entries = {p.stem: derive_tokenizer(cli, p, env) for p in (kept, vanished, changed, touched)}
    vanished.unlink()
    write_gguf(changed, TOKENS + ["x"])  # another vocabulary at the same path
    later = touched.stat().st_mtime + 60
    os.utime(touched, (later, later))  # the same file, touched: its tokenizer still holds
    states = {e["model"]: (e["state"], e["reason"]) for e in listing(cli, env)["entries"]}
    assert states == {
        str(kept): ("ok", None),
        str(vanished): ("gone", f"{vanished}: no such file any more"),
        str(changed): ("changed", f"{changed} changed since"),
        str(touched): ("ok", None),
    }

    sizes = {name: path.stat().st_size for name, path in entries.items()}
    dry = cli("cache", "prune", "--dry-run", "-f", "json", env=env).json()
    assert dry["dry_run"] is True
    assert sorted(e["model"] for e in dry["removed"]) == [str(changed), str(vanished)]
    assert all(p.exists() for p in entries.values())

    shown = cli("cache", "prune", "--dry-run", "-f", "table", env={**env, "COLUMNS": "250"})
    total = sizes["vanished"] + sizes["changed"]
    assert shown.stdout.splitlines()[-1] == f"Would remove 2 entries, {total:,} bytes."
    assert all(e["id"] in shown.stdout for e in dry["removed"])

    done = cli("cache", "prune", "-f", "json", env=env).json()
    assert (done["dry_run"], done["removed"]) == (False, dry["removed"])
    assert done["size"] == sizes["vanished"] + sizes["changed"]
    assert {p.stem for p in entries.values() if p.exists()} == {
        entries["kept"].stem, entries["touched"].stem,
    }  # fmt: skip
    assert cli("cache", "prune", "-f", "json", env=env).json()["removed"] == []
    assert cli("cache", "prune", "-f", "table", env=env).stdout == "Nothing to remove.\n"


def test_prune_removes_damaged_and_outdated_entries(cli, env, fake_hub, tmp_path):
    range_file = fetch_range(cli, env, fake_hub)
    with open(range_file, "r+b") as handle:  # cut short, as a full disk leaves it
        handle.truncate(range_file.stat().st_size - 100)
    derived = derive_tokenizer(cli, write_gguf(tmp_path / "tiny.gguf"), env)
    record = json.loads(derived.read_text())
    record["source"]["transformers"] = "4.0.0"  # what an older transformers built
    old = derived.with_name(derived.name.replace("transformers-", "transformers-old-"))
    old.write_text(json.dumps(record))
    incomplete = derived.with_name(f".{derived.name}.0123abcd.incomplete")
    incomplete.write_text("{")
    hour_ago = time.time() - 3700
    stale = range_file.with_name(f".{range_file.name}.4567cdef.incomplete")
    stale.write_bytes(b"\0" * 10)
    os.utime(stale, (hour_ago, hour_ago))
    states = {(e["kind"], e["paths"][0]): e["state"] for e in listing(cli, env)["entries"]}
    assert states == {
        ("headers", str(commit_folder(env, fake_hub) / "files.json")): "ok",
        ("range", str(range_file)): "damaged",
        ("tokenizer", str(derived)): "ok",
        ("tokenizer", str(old)): "outdated",
        ("incomplete", str(incomplete)): "incomplete",
        ("incomplete", str(stale)): "incomplete",
    }
    removed = cli("cache", "prune", "-f", "json", env=env).json()["removed"]
    # An incomplete file written to less than an hour ago may be a running download's.
    assert sorted(p for e in removed for p in e["paths"]) == sorted(
        [str(range_file), str(old), str(stale)]
    )
    assert derived.exists() and incomplete.exists()


# --- path ---------------------------------------------------------------------------------


def test_path_prints_both_folders(cli, env):
    hub_dir = str(Path(env["HF_ASSETS_CACHE"]).resolve() / "embinspect")
    run = cli("cache", "path", env=env)
    assert run.stdout == f"name\tpath\ncache_dir\t{env['EMBINSPECT_CACHE']}\nhub_dir\t{hub_dir}\n"
    document = cli("cache", "path", "-f", "json", env=env).json()
    assert document == {"cache_dir": env["EMBINSPECT_CACHE"], "hub_dir": hub_dir}


def test_path_follows_xdg_cache_home_without_embinspect_cache(cli, env, tmp_path):
    env = {**env, "EMBINSPECT_CACHE": "", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    document = cli("cache", "path", "-f", "json", env=env).json()
    assert document["cache_dir"] == str(tmp_path / "xdg" / "embinspect")


# --- info, the API, imports ---------------------------------------------------------------


def test_info_says_which_ranges_are_held(cli, env, fake_hub):
    hub_env = {**env, "HF_ENDPOINT": fake_hub.url}
    before = cli("info", "test-org/tiny", "-f", "json", env=hub_env).json()
    assert before["cached_ranges"] == []
    assert "cached ranges  none" in cli("info", "test-org/tiny", "-f", "table", env=hub_env).stdout
    range_file = fetch_range(cli, env, fake_hub)
    [ranged] = by_kind(listing(cli, env))["range"]
    after = cli("info", "test-org/tiny", "-f", "json", env=hub_env).json()
    size = range_file.stat().st_size
    assert after["cached_ranges"] == [
        {"id": ranged["id"], "tensor": TABLE, "file": "model.safetensors", "bytes": size}
    ]
    table = cli("info", "test-org/tiny", "-f", "table", env=hub_env).stdout
    assert f"cached ranges  {TABLE} of model.safetensors: {size:,} bytes" in table
    with open(range_file, "r+b") as handle:  # cut short: fetched again, so not held
        handle.truncate(size - 1)
    assert cli("info", "test-org/tiny", "-f", "json", env=hub_env).json()["cached_ranges"] == []


def test_info_on_a_local_model_says_nothing_of_the_cache(cli, env, tmp_path):
    document = cli("info", write_gguf(tmp_path / "tiny.gguf"), "-f", "json", env=env).json()
    assert "cached_ranges" not in document


def test_the_api_lists_and_removes_what_the_cli_does(cli, env, tmp_path, monkeypatch):
    import embinspect

    entry = derive_tokenizer(cli, write_gguf(tmp_path / "tiny.gguf"), env)
    import huggingface_hub.constants

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # huggingface_hub read HF_ASSETS_CACHE when imported; a new process would read it now.
    monkeypatch.setattr(huggingface_hub.constants, "HF_ASSETS_CACHE", env["HF_ASSETS_CACHE"])
    listed = embinspect.cache_entries()
    assert isinstance(listed, embinspect.CacheListing)
    assert listed.to_dict() == listing(cli, env)
    [found] = listed.entries
    assert isinstance(found, embinspect.CacheEntry)
    assert found.id in str(listed) and str(entry.parent.parent) in str(listed)
    assert embinspect.prune_cache(dry_run=True).removed == []
    with pytest.raises(embinspect.UsageError, match="no cache entry has the id"):
        embinspect.remove_cache_entries("ffffffffffff")
    removed = embinspect.remove_cache_entries(found.id)
    assert isinstance(removed, embinspect.CacheRemoval)
    assert removed.removed == [found] and not entry.exists()
    assert embinspect.clear_cache().removed == []


def test_cache_commands_import_nothing_heavy(env):
    from test_imports import imported_heavy_modules

    for args in (("cache", "--help"), ("cache", "ls"), ("cache", "prune", "--dry-run")):
        assert imported_heavy_modules(*args, env=env) == [], args
