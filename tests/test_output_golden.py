"""The same call rendered in every output format, against expected text (width pinned)."""

# ruff: noqa: E501  (expected tables are as wide as the pinned terminal)

from __future__ import annotations

import pytest

INFO_TABLE = """\
Embedding tensors of model
┏━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┓
┃ role       ┃ name                                    ┃ shape       ┃ dtype ┃ file              ┃      bytes ┃
┡━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━┩
│ token      │ embeddings.word_embeddings.weight       │ 30522 × 384 │ F32   │ model.safetensors │ 46,881,792 │
│ position   │ embeddings.position_embeddings.weight   │ 512 × 384   │ F32   │ model.safetensors │    786,432 │
│ token_type │ embeddings.token_type_embeddings.weight │ 2 × 384     │ F32   │ model.safetensors │      3,072 │
└────────────┴─────────────────────────────────────────┴─────────────┴───────┴───────────────────┴────────────┘
vocabulary   30,522 tokens (tokenizer.json); table has 30,522 rows
hidden size  384
parameters   11,917,824 in embeddings of 22,713,728 (52.5%)
output head  none: BertModel has no output head
positions    learned, added to the input: embeddings.position_embeddings.weight (512 positions)
"""

TOKENS_TABLE = """\
embeddings.word_embeddings.weight of model
┏━━━━━┳━━━━━━┳━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━┓
┃ pos ┃   id ┃ token ┃ text  ┃   norm ┃ first components ┃
┡━━━━━╇━━━━━━╇━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━┩
│   0 │ 4937 │ cat   │ "cat" │ 1.3733 │ +0.0325 -0.0329  │
│   1 │ 2938 │ sat   │ "sat" │ 1.3368 │ -0.0217 +0.0084  │
└─────┴──────┴───────┴───────┴────────┴──────────────────┘
"""

TOKENS_POSITIONS_TABLE = """\
embeddings.word_embeddings.weight of model
┏━━━━━┳━━━━━━┳━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━┓
┃ pos ┃   id ┃ token ┃ text    ┃   norm ┃ first components ┃ pos id ┃ pos norm ┃ input norm ┃
┡━━━━━╇━━━━━━╇━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━┩
│   0 │  101 │ [CLS] │ "[CLS]" │ 1.5457 │ -0.0176 -0.0076  │      0 │   2.3618 │     3.3357 │
│   1 │ 4937 │ cat   │ "cat"   │ 1.3733 │ +0.0325 -0.0329  │      1 │   0.4911 │     1.4723 │
│   2 │  102 │ [SEP] │ "[SEP]" │ 1.0580 │ +0.0332 -0.0085  │      2 │   0.4468 │     1.5478 │
└─────┴──────┴───────┴─────────┴────────┴──────────────────┴────────┴──────────┴────────────┘
input = token + position (embeddings.position_embeddings.weight) + token type 0
(embeddings.token_type_embeddings.weight), before the embedding LayerNorm
special tokens added, as the model sees the text; --no-special leaves them out
"""

# Row values are float32 numbers of the real MiniLM table, printed exactly.
TOKENS_ROWS = [
    (0, 4937, "cat", "cat", 1.3732863909657167, [0.03254606947302818, -0.032863881438970566]),
    (1, 2938, "sat", "sat", 1.3367513628205485, [-0.02172708325088024, 0.008386376313865185]),
]


def stripped(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def test_info_table(cli, minilm):
    run = cli("info", "model", "--format", "table", cwd=minilm.parent)
    assert stripped(run.stdout) == INFO_TABLE


def test_tokens_table(cli, minilm):
    run = cli("tokens", "model", "cat sat", "--components", "2", "-f", "table", cwd=minilm.parent)
    assert stripped(run.stdout) == TOKENS_TABLE


def test_tokens_positions_table(cli, minilm):
    args = ("tokens", "model", "cat", "--positions", "--components", "2", "-f", "table")
    run = cli(*args, cwd=minilm.parent)
    assert stripped(run.stdout) == TOKENS_POSITIONS_TABLE


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_tokens_delimited(cli, minilm, fmt):
    run = cli("tokens", minilm, "cat sat", "--components", "2", "-f", fmt)
    sep = "\t" if fmt == "tsv" else ","
    lines = run.stdout.splitlines()
    assert lines[0] == sep.join(["position", "token_id", "token", "text", "norm", "head"])
    for line, (position, token_id, token, text, norm, head) in zip(
        lines[1:], TOKENS_ROWS, strict=True
    ):
        cells = line.split(sep)
        assert cells[:4] == [str(position), str(token_id), token, text]
        assert float(cells[4]) == pytest.approx(norm, rel=1e-12)
        assert [float(v) for v in cells[5].split()] == head
    assert len(lines) == 1 + len(TOKENS_ROWS)


def test_tokens_json_and_jsonl(cli, minilm):
    document = cli("tokens", minilm, "cat sat", "--components", "2", "-f", "json").json()
    assert list(document) == [
        "model", "text", "tensor", "position", "position_note", "tokens", "special_tokens",
        "schema_version", "provenance",
    ]  # fmt: skip
    assert document["special_tokens"] is False
    lines = cli("tokens", minilm, "cat sat", "--components", "2", "-f", "jsonl").jsonl()
    for row, line, expected in zip(document["tokens"], lines, TOKENS_ROWS, strict=True):
        position, token_id, token, text, norm, head = expected
        assert (row["position"], row["token_id"], row["token"], row["text"]) == expected[:4]
        assert row["head"] == head and row["norm"] == pytest.approx(norm, rel=1e-12)
        # jsonl leaves out what was not asked for; json keeps every key, null when unused
        assert line == {k: v for k, v in row.items() if v is not None}
        assert row["vector"] is None and "vector" not in line


NEIGHBORS_TABLE = """\
Neighbors of 'king' = king #2332
┏━━━━━━┳━━━━━━━┳━━━━━━━━━┳━━━━━━━━┓
┃ rank ┃    id ┃ token   ┃ cosine ┃
┡━━━━━━╇━━━━━━━╇━━━━━━━━━╇━━━━━━━━┩
│    1 │  5465 │ kings   │ 0.6904 │
│    2 │  3035 │ queen   │ 0.6273 │
│    3 │ 11590 │ monarch │ 0.4935 │
└──────┴───────┴─────────┴────────┘
"""

ANALOGY_TABLE = """\
king − man + woman ≈ ?   (3CosAdd)
┏━━━━━━┳━━━━━━━┳━━━━━━━━━┳━━━━━━━━┓
┃ rank ┃    id ┃ token   ┃ cosine ┃
┡━━━━━━╇━━━━━━━╇━━━━━━━━━╇━━━━━━━━┩
│    1 │  3035 │ queen   │ 0.5015 │
│    2 │  5465 │ kings   │ 0.4511 │
│    3 │ 11590 │ monarch │ 0.4066 │
└──────┴───────┴─────────┴────────┘
'king' = king #2332
'man' = man #2158
'woman' = woman #2450
"""

COMPARE_TABLE = """\
cosine between items
┏━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━┓
┃     ┃    cat ┃    dog ┃    car ┃
┡━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━┩
│ cat │ 1.0000 │ 0.4239 │ 0.3212 │
│ dog │ 0.4239 │ 1.0000 │ 0.2485 │
│ car │ 0.3212 │ 0.2485 │ 1.0000 │
└─────┴────────┴────────┴────────┘
'cat' = cat #4937
'dog' = dog #3899
'car' = car #2482
"""

KING_NEIGHBOURS = [(1, 5465, "kings"), (2, 3035, "queen"), (3, 11590, "monarch")]
KING_SCORES = [0.6903928527924198, 0.6272520926934624, 0.49350162815917104]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["neighbors", "model", "king", "-k", "3"], NEIGHBORS_TABLE),
        (["analogy", "model", "king", "man", "woman", "-k", "3"], ANALOGY_TABLE),
        (["compare", "model", "cat", "dog", "car"], COMPARE_TABLE),
    ],
)
def test_query_tables(cli, minilm, args, expected):
    run = cli(*args, "-f", "table", cwd=minilm.parent)
    assert stripped(run.stdout) == expected


def test_neighbors_json(cli, minilm):
    document = cli("neighbors", minilm, "king", "-k", "3", "-f", "json").json()
    assert len(document) == 1
    answer = document[0]
    assert list(answer) == [
        "query", "token_ids", "tokens", "pooled", "metric", "neighbors", "schema_version",
        "provenance",
    ]  # fmt: skip
    assert (answer["metric"], answer["schema_version"]) == ("cosine", 2)
    assert (answer["query"], answer["token_ids"], answer["tokens"]) == ("king", [2332], ["king"])
    assert answer["pooled"] is None
    assert [(n["rank"], n["token_id"], n["token"]) for n in answer["neighbors"]] == KING_NEIGHBOURS
    assert [n["score"] for n in answer["neighbors"]] == pytest.approx(KING_SCORES, rel=1e-12)


def test_neighbors_tsv(cli, minilm):
    lines = cli("neighbors", minilm, "king", "-k", "3", "-f", "tsv").stdout.splitlines()
    assert lines[0] == "query\tquery_ids\trank\ttoken_id\ttoken\tcosine\terror"
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[:5] for r in rows] == [
        ["king", "2332", str(r), str(i), t] for r, i, t in KING_NEIGHBOURS
    ]
    assert [float(r[5]) for r in rows] == pytest.approx(KING_SCORES, rel=1e-12)
    assert all(r[6] == "" for r in rows)


def test_analogy_json_and_tsv(cli, minilm):
    answer = cli("analogy", minilm, "king", "man", "woman", "-k", "2", "-f", "json").json()[0]
    assert list(answer) == [
        "formula", "method", "queries", "metric", "results", "schema_version", "provenance",
    ]  # fmt: skip
    assert answer["metric"] == "cosine"
    assert (answer["formula"], answer["method"]) == ("king - man + woman", "add")
    assert [r["token"] for r in answer["results"]] == ["queen", "kings"]
    lines = cli("analogy", minilm, "king", "man", "woman", "-k", "2", "-f", "tsv").stdout
    rows = [line.split("\t") for line in lines.splitlines()]
    assert rows[0] == ["formula", "method", "rank", "token_id", "token", "cosine", "error"]
    assert [r[:5] for r in rows[1:]] == [
        ["king - man + woman", "add", "1", "3035", "queen"],
        ["king - man + woman", "add", "2", "5465", "kings"],
    ]
    assert float(rows[1][5]) == pytest.approx(answer["results"][0]["score"], rel=1e-15)


def test_compare_json(cli, minilm):
    document = cli("compare", minilm, "cat", "dog", "-f", "json").json()
    assert list(document) == ["metric", "items", "matrix", "schema_version", "provenance"]
    assert [i["tokens"] for i in document["items"]] == [["cat"], ["dog"]]
    assert document["matrix"][0][1] == pytest.approx(0.4238563352493071, rel=1e-12)
    assert document["matrix"][0][0] == pytest.approx(1.0, abs=1e-15)
