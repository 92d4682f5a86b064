"""Which torch device scores the table: ``auto`` picks a GPU that torch sees."""

from __future__ import annotations

from typing import TYPE_CHECKING

from embinspect.errors import Option, UsageError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` picks a GPU that torch sees (CUDA, then Apple MPS), else the CPU."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(Option("device", name), ": use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(Option("device", name), ": torch sees no CUDA GPU here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                Option("device", name), f": only {torch.cuda.device_count()} CUDA devices"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(Option("device", name), ": MPS is not available here")
    elif device.type not in {"cpu", "cuda", "mps"}:
        raise UsageError(Option("device", name), ": use cpu, cuda, cuda:N, mps or auto")
    return device
