"""Shell completion (``embinspect --install-completion``): what Tab offers where Click has
nothing of its own to offer (it completes commands, options and choices such as
``--format`` itself): local files and folders for MODEL and the other path arguments, and
the devices for ``--device``.

A completion runs on every Tab press, in a process of its own: nothing here imports torch
or transformers, and nothing reaches the network.
"""

from __future__ import annotations

import os

DEVICES = ("auto", "cpu", "cuda", "mps")


def local_paths(incomplete: str) -> list[str]:
    """Files and folders whose path starts with ``incomplete``, sorted, each as typed plus
    the rest of its name, a folder with a trailing ``/``; hidden ones only when the name
    typed so far starts with a dot. ``~`` is read as the home folder and kept as typed."""
    folder, slash, start = incomplete.rpartition("/")
    typed = folder + slash  # "" (the working folder), "/", "models/", "~/"
    try:
        entries = list(os.scandir(os.path.expanduser(typed) or "."))
    except OSError:  # no such folder, not a folder, no permission
        return []
    found = []
    for entry in entries:
        if not entry.name.startswith(start) or (entry.name.startswith(".") and not start):
            continue
        try:
            is_folder = entry.is_dir()  # a link to a folder counts as one
        except OSError:
            is_folder = False
        found.append(typed + entry.name + ("/" if is_folder else ""))
    return sorted(found)


def devices(incomplete: str) -> list[str]:
    """The ``--device`` values that start with ``incomplete`` (``cuda:N`` is typed out)."""
    return [device for device in DEVICES if device.startswith(incomplete)]
