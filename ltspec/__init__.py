"""ltspec: compile a TOML experiment spec into a plan of lottery-ticket training stages.

`ltspec.load(spec, generator=..., sparsity=..., arm=..., seed=...)` returns a trained ticket (see
`ltspec.tickets`); it is imported on first use, so that importing ltspec (and `ltspec validate`) stays torch-free.
"""

import os

# OpenMP threads that spin while they wait make multi-threaded CPU training up to 10x slower whenever another
# process shares the cores (benchmarks/threads.py on a loaded 2-core machine: a LeNet-300-100 epoch 0.148 s spinning,
# 0.018 s passive, 0.014 s on one thread). Stages train on `resources.cpus` threads, one by default, and with one
# thread OpenMP has nobody to wait for, so the policy matters only where a user asks for more threads: there passive
# waiting is the setting that never collapses. It must be set before torch starts OpenMP; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["Ticket", "TicketError", "__version__", "export", "load"]


def __getattr__(name: str):
    """`load`, `export`, `Ticket` and `TicketError` from `ltspec.tickets`, imported when first asked for."""
    if name in ("Ticket", "TicketError", "export", "load"):
        from ltspec import tickets

        return getattr(tickets, name)
    raise AttributeError(f"module 'ltspec' has no attribute {name!r}")
