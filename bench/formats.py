"""Benchmark the other formats MODEL can be: a GGUF file (the real SmolLM2-135M, Q8_0
token table) against transformers' GGUF loading, and a GloVe text file (the real GloVe
6B 50d) against gensim, parsed each run and read back from the parse kept in the cache.
``make bench`` runs it after run.py; writes bench/RESULTS-formats.md.

Every case is a whole process, as a user runs it, and every answer is checked against
the peer's: the same neighbor ids, the same right analogy questions.

``python bench/formats.py --only glove-cache`` runs the kept-parse cases alone and prints
their rows (RESULTS-formats.md is left as it is).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from common import BENCH, EMBINSPECT, PY, ROOT, Timed, fmt_bytes, fmt_s, run_json, run_timed

sys.path.insert(0, str(ROOT / "tests"))
import checkpoints  # noqa: E402

K = 10
QUERY_ID = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["glove-cache"], help="run these cases alone")
    only = parser.parse_args().only
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    gguf, glove = checkpoints.smollm2_gguf(), checkpoints.glove_6b_50d()
    rows: list[tuple[str, str, str, str, str]] = []  # case, embinspect, peer, ratio, notes

    def add(case, ours, peer=None, peer_s=None, notes=""):
        ratio = f"{peer_s / ours.median:.1f}×" if peer_s else "–"
        rows.append(
            (case, f"{ours.summary()}, {fmt_bytes(ours.peak_rss)} peak", peer or "–", ratio, notes)
        )

    if only == "glove-cache":
        glove_cache(glove, add)
        print("\n".join(f"| {' | '.join(row)} |" for row in rows))
        return

    # -- GGUF ------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as cold:
        env = {"EMBINSPECT_CACHE": cold}  # a fresh cache: the first run converts the tokenizer
        tokens = [EMBINSPECT, "tokens", str(gguf), "Paris, naïvely", "-f", "json"]
        first = run_timed(tokens, repeat=1, warmup=0, env=env)
        add("GGUF `tokens` (SmolLM2-135M), first run: tokenizer converted", first)
        warm = run_timed(tokens, repeat=3, env=env)
        add("GGUF `tokens`, later runs: tokenizer from the cache", warm)
        info = run_timed([EMBINSPECT, "info", str(gguf), "-f", "json"], repeat=5, env=env)
        add("GGUF `info` (header only)", info, notes="target 0.3 s")
        ours = run_timed(
            [EMBINSPECT, "neighbors", str(gguf), f"#{QUERY_ID}", "-k", str(K), "-f", "json"],
            repeat=3,
            env=env,
        )
        ids = [n["token_id"] for n in json.loads(ours.stdout)[0]["neighbors"]]
        peer, peer_run = run_json(
            [PY, str(BENCH / "peer_transformers_gguf.py"), str(gguf), str(QUERY_ID), str(K)]
        )
        peer_s = peer_run.median
        add(
            f"GGUF `neighbors '#{QUERY_ID}'` (Q8_0 table dequantized in row chunks)",
            ours,
            f"transformers `from_pretrained(gguf_file=)` {fmt_s(peer_s)}, "
            f"{fmt_bytes(peer_run.peak_rss)} peak",
            peer_s,
            f"ids {'=' if ids == peer['ids'] else '≠'} transformers'",
        )

    # -- GloVe -----------------------------------------------------------------------------
    glove_cache(glove, add)
    parsed = {"EMBINSPECT_NO_CACHE": "1"}  # the text parsed every run, as before the cache
    ours = run_timed(
        [EMBINSPECT, "neighbors", str(glove), "king", "-k", str(K), "-f", "json"],
        repeat=3,
        env=parsed,
    )
    words = [n["token"] for n in json.loads(ours.stdout)[0]["neighbors"]]
    peer, peer_run = run_json([PY, str(BENCH / "peer_gensim_glove.py"), str(glove), "king", str(K)])
    add(
        "GloVe 6B 50d `neighbors king` (text parsed each run)",
        ours,
        f"gensim load {fmt_s(peer['load_s'])} + most_similar {fmt_s(peer['work_s'])}, "
        f"{fmt_bytes(peer_run.peak_rss)} peak",
        peer_run.median,
        f"words {'=' if words == peer['words'] else '≠'} gensim's",
    )
    ours = run_timed(
        [EMBINSPECT, "analogy", str(glove), "--file", "google", "-f", "json"],
        repeat=1,
        warmup=0,
        env=parsed,
    )
    result = json.loads(ours.stdout)
    right = sorted(a["question"].upper() for a in result["answers"] if a["correct"])
    peer, peer_run = run_json([PY, str(BENCH / "peer_gensim_glove.py"), str(glove), "--google"])
    add(
        "GloVe 6B 50d Google analogies (19,544), whole process",
        ours,
        f"gensim evaluate_word_analogies {fmt_s(peer['work_s'])} (+ load {fmt_s(peer['load_s'])})",
        peer["work_s"],
        f"right questions {'=' if right == peer['correct'] else '≠'} gensim's ({len(right):,} "
        f"of {result['total']['scored']:,}, accuracy {result['total']['accuracy']:.2%})",
    )

    write_results(rows, started, load_at_start)


def glove_cache(glove, add) -> None:
    """GloVe 6B 50d's first run (the text parsed and kept in a fresh cache, each run), the
    runs after it (the kept parse mapped), and ``info`` on the kept parse."""
    neighbors = [EMBINSPECT, "neighbors", str(glove), "king", "-k", str(K), "-f", "json"]
    first = Timed()
    for _ in range(3):
        with tempfile.TemporaryDirectory() as fresh:
            run = run_timed(neighbors, repeat=1, warmup=0, env={"EMBINSPECT_CACHE": fresh})
        first.times += run.times
        first.peak_rss = max(first.peak_rss, run.peak_rss)
        first.stdout = run.stdout
    add("GloVe 6B 50d `neighbors king`, first run: text parsed, kept in the cache", first)
    with tempfile.TemporaryDirectory() as kept:
        env = {"EMBINSPECT_CACHE": kept}
        run_timed(neighbors, repeat=1, warmup=0, env=env)  # parsed and kept
        later = run_timed(neighbors, repeat=5, warmup=0, env=env)
        same = "=" if later.stdout == first.stdout else "≠"
        add(
            "GloVe 6B 50d `neighbors king`, later runs: the kept parse mapped",
            later,
            notes=f"{later.median / first.median:.2f} of the first run (target ≤ 0.5); "
            f"answer {same} the first run's",
        )
        info = run_timed([EMBINSPECT, "info", str(glove), "-f", "json"], repeat=5, env=env)
        kept_parse = json.loads(info.stdout)["cached_parse"]["kept"]
        add(
            "GloVe 6B 50d `info`, the kept parse's shape",
            info,
            notes=f"target 0.5 s; read from the cache: {str(kept_parse).lower()}",
        )


def write_results(rows, started: float, load_at_start) -> None:
    lines = [
        "# embinspect benchmark: GGUF and word-vector files",
        "",
        f"`make bench` (bench/formats.py), {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
        f"whole processes; {fmt_s(time.perf_counter() - started)} in all. Load average "
        f"(1, 5, 15 min) {' '.join(f'{x:.2f}' for x in load_at_start)} at the start, "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end: above 0 means other "
        "work shared the cores.",
        "",
        "| case | embinspect | peer | speed-up | notes |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
    ]
    report = "\n".join(lines)
    (BENCH / "RESULTS-formats.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
