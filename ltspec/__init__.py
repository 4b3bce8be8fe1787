"""ltspec: compile a TOML experiment spec into a plan of lottery-ticket training stages."""

import os

# OpenMP threads that spin while they wait make small-net CPU training up to 10x slower whenever another process
# shares the cores (measured: 1.47 s vs 0.12 s per LeNet epoch on a loaded 2-core machine). Passive waiting costs
# nothing measurable otherwise. It must be set before torch starts OpenMP, so it is set here; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
