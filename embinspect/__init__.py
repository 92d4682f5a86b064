"""embinspect: look inside the embedding tables of real model checkpoints.

The library opens a checkpoint's headers (``checkpoint.open_checkpoint``), reads only
the rows it needs (``rows.read_rows``) and returns small result dataclasses; the CLI in
``embinspect.cli`` parses arguments and prints those results.
"""

__version__ = "0.1.0"
