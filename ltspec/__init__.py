"""ltspec: compile a TOML experiment spec into a plan of lottery-ticket training stages."""

import os

# OpenMP threads that spin while they wait make multi-threaded CPU training up to 10x slower whenever another
# process shares the cores (benchmarks/threads.py on a loaded 2-core machine: a LeNet-300-100 epoch 0.148 s spinning,
# 0.018 s passive, 0.014 s on one thread). Stages train on `resources.cpus` threads, one by default, and with one
# thread OpenMP has nobody to wait for, so the policy matters only where a user asks for more threads: there passive
# waiting is the setting that never collapses. It must be set before torch starts OpenMP; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
