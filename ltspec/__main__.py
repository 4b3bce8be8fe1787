"""`python -m ltspec` is the `ltspec` command."""

from ltspec.cli import app

if __name__ == "__main__":  # the local runner's worker processes import this module again as `__mp_main__`
    app(prog_name="ltspec")
