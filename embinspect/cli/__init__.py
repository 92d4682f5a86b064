"""The command line: a Typer app over the library (``embinspect.cli.app``), shared options
declared once (``options``), one module per command with its renderers, and the output
formats and messages (``render``)."""

from embinspect.cli.app import app, entry, main

__all__ = ["app", "entry", "main"]
