"""Bytes each command fetches from the Hub, measured against the tests' local Hub server.

    .venv/bin/python bench/hub_fetch.py FOLDER [FOLDER...]

serves each Hugging Face-layout FOLDER as the repo ``local/NAME`` (``tests/hub_server.py``),
runs ``info``, ``neighbors '#1000'`` and ``neighbors '#1000' --table output`` on it with a
fresh ``HF_HOME`` (kept only for the three runs), and prints what the server sent, by file.
The README's Hub table comes from this script on the test checkpoints and on
``.cache/bench/llama3-8b-shape``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hub_server import FakeHub  # noqa: E402

COMMANDS = (
    ("info",),
    ("neighbors", "#1000", "-k", "3"),
    ("neighbors", "#1000", "--table", "output"),
)


def main(folders: list[str]) -> None:
    hub = FakeHub().start()
    embinspect = str(Path(sys.executable).parent / "embinspect")
    try:
        for folder in map(Path, folders):
            repo = f"local/{folder.name}"
            hub.add(repo, folder.resolve())
            with tempfile.TemporaryDirectory() as home:
                env = {**os.environ, "HF_HOME": home, "HF_ENDPOINT": hub.url, "HF_TOKEN": ""}
                for command in COMMANDS:
                    hub.reset()
                    started = time.perf_counter()
                    done = subprocess.run(
                        [embinspect, command[0], repo, *command[1:], "-f", "json"],
                        env=env,
                        capture_output=True,
                        text=True,
                    )
                    took = time.perf_counter() - started
                    sent: dict[str, int] = {}
                    for request in hub.requests:
                        if request.sent:
                            start, stop = request.sent
                            sent[request.file] = sent.get(request.file, 0) + stop - start
                    status = "ok" if done.returncode == 0 else done.stderr.strip()
                    print(f"$ embinspect {command[0]} {repo} {' '.join(command[1:])}  ({status})")
                    total, count = sum(sent.values()), len(hub.requests)
                    print(f"  {total:,} bytes in {took:.1f} s, {count} requests")
                    for name, size in sent.items():
                        print(f"    {size:>15,}  {name}")
    finally:
        hub.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
