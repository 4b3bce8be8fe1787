"""ltspec: compile a TOML experiment spec into a plan of lottery-ticket training stages."""

__version__ = "0.1.0"
