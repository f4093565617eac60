"""Shared test configuration.

Tests use tiny networks, for which one intra-op thread is faster than several (and the suite
runs beside other processes on 2 cores), so torch is pinned to one thread here.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
