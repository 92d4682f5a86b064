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
output head  tied: no output tensor is stored: the head reuses the token table
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
    assert set(document) == {"model", "text", "tensor", "position", "position_note", "tokens"}
    lines = cli("tokens", minilm, "cat sat", "--components", "2", "-f", "jsonl").jsonl()
    for row, line, expected in zip(document["tokens"], lines, TOKENS_ROWS, strict=True):
        position, token_id, token, text, norm, head = expected
        assert (row["position"], row["token_id"], row["token"], row["text"]) == expected[:4]
        assert row["head"] == head and row["norm"] == pytest.approx(norm, rel=1e-12)
        # jsonl leaves out what was not asked for; json keeps every key, null when unused
        assert line == {k: v for k, v in row.items() if v is not None}
        assert row["vector"] is None and "vector" not in line
