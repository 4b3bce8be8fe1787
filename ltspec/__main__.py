"""`python -m ltspec` is the `ltspec` command."""

from ltspec.cli import app

app(prog_name="ltspec")
