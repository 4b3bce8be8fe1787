"""ltspec: compile a TOML experiment spec into a plan of lottery-ticket training stages.

`ltspec.load(spec, generator=..., sparsity=..., arm=..., seed=...)` returns a trained ticket (see
`ltspec.tickets`); it is imported on first use, so that importing ltspec (and `ltspec validate`) stays torch-free.
"""

__version__ = "0.1.0"
__all__ = ["Ticket", "TicketError", "__version__", "export", "load"]


def __getattr__(name: str):
    """`load`, `export`, `Ticket` and `TicketError` from `ltspec.tickets`, imported when first asked for."""
    if name in ("Ticket", "TicketError", "export", "load"):
        from ltspec import tickets

        return getattr(tickets, name)
    raise AttributeError(f"module 'ltspec' has no attribute {name!r}")
