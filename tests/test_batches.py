"""Queries from stdin: answered in batches, streamed, in bounded memory; one bad query among
good ones is reported and the others are answered."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import run_cli


def query_lines(minilm, count: int, seed: int = 0) -> list[str]:
    vocab = json.loads((minilm / "tokenizer.json").read_text())["model"]["vocab"]
    words = sorted(w for w in vocab if w.isalpha())
    rng = random.Random(seed)
    return [rng.choice(words) if i % 2 else f"#{rng.randrange(len(vocab))}" for i in range(count)]


@pytest.fixture(scope="module")
def ten_thousand(minilm):
    lines = query_lines(minilm, 10_000)
    run = run_cli("neighbors", minilm, "-", "-k", "5", "-f", "jsonl", input="\n".join(lines) + "\n")
    assert run.returncode == 0, run.stderr
    return lines, run.stdout.splitlines()


@pytest.mark.slow
def test_ten_thousand_queries_one_line_each_in_order(ten_thousand):
    lines, output = ten_thousand
    assert len(output) == 10_000
    answers = [json.loads(line) for line in output]
    assert [a["query"] for a in answers] == lines
    assert all(len(a["neighbors"]) == 5 for a in answers)


@pytest.mark.slow
def test_batched_answers_equal_one_at_a_time(cli, minilm, ten_thousand):
    lines, output = ten_thousand
    picks = list(range(0, 10_000, 499))
    alone = cli(
        "neighbors", minilm, *[lines[i] for i in picks], "-k", "5", "--batch-size", "1",
        "-f", "jsonl",
    ).jsonl()  # fmt: skip
    assert alone == [json.loads(output[i]) for i in picks]


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_queries(minilm):
    """Resident memory once the answers stream (around 3,000 queries, when the allocator
    has settled) and near the end of 10,000: the lowest late figure within 6 MiB of the
    highest early one (single readings swing by a few MiB as the allocator takes and gives
    back arenas). Holding the answers in between (5 neighbors each) would grow it by more
    than 10 MiB over 7,000 queries, 8 MiB between the two windows."""
    lines = query_lines(minilm, 10_000, seed=1)
    # A process: its resident memory is what is measured.
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("EMBINSPECT_DEBUG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "embinspect", "neighbors", str(minilm), "-", "-k", "5",
         "-f", "jsonl"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    feeder = threading.Thread(target=_feed, args=(process.stdin, lines))
    feeder.start()
    early, late = [], []
    for count, _ in enumerate(process.stdout, 1):
        # The pipe holds back a few hundred lines at most.
        if count % 100 == 0 and 2_500 <= count <= 3_500:
            early.append(_resident_kib(process.pid))
        elif count % 100 == 0 and 9_000 <= count <= 9_900:
            late.append(_resident_kib(process.pid))
    feeder.join()
    assert process.wait() == 0 and count == 10_000
    assert min(late) - max(early) < 6 * 1024, (early, late)


def _feed(pipe, lines: list[str]) -> None:
    with pipe:
        pipe.write(("\n".join(lines) + "\n").encode())


def _resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_one_bad_query_among_good_ones(cli, minilm):
    run = cli("neighbors", minilm, "-", "-k", "2", "-f", "jsonl", input="king\n#99999999\nqueen\n")
    code, stdout, stderr = run.returncode, run.stdout, run.stderr
    assert code == 4
    answers = [json.loads(line) for line in stdout.splitlines()]
    assert [a["query"] for a in answers] == ["king", "#99999999", "queen"]
    assert answers[1] == {
        "query": "#99999999",
        "metric": "cosine",
        "error": answers[1]["error"],
        "schema_version": 2,
        "provenance": answers[0]["provenance"],
    }
    assert "outside the table" in answers[1]["error"]
    assert len(answers[0]["neighbors"]) == len(answers[2]["neighbors"]) == 2
    assert stderr.strip().splitlines() == ["embinspect: error: " + answers[1]["error"]]
    assert "Traceback" not in stderr


def test_analogies_from_stdin(cli, minilm):
    run = cli(
        "analogy", minilm, "-", "-k", "1", "-f", "tsv", input="king man woman\nparis france italy\n"
    )
    rows = [line.split("\t") for line in run.stdout.splitlines()]
    assert rows[0] == ["formula", "method", "rank", "token_id", "token", "cosine", "error"]
    assert [(r[0], r[4]) for r in rows[1:3]] == [
        ("king - man + woman", "queen"),
        ("paris - france + italy", "italian"),  # MiniLM's input table is no word2vec
    ]
    alone = cli("analogy", minilm, "paris", "france", "italy", "-k", "1", "-f", "tsv")
    assert alone.stdout.splitlines()[1].split("\t") == rows[2]
