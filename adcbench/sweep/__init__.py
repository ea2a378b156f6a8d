"""Sweeps: grids of runs from the command line or a sweep file, identified by config hash + seed,
resumed from checkpoints, sliced into shards and launched locally, on Ray or through SLURM.

Sits above `adcbench.train` (it runs `train.loop.run`) and below the report and CLI layers."""

from adcbench.sweep.grid import Run, SweepError, expand, parse_seeds
from adcbench.sweep.sweepfile import load_sweep

__all__ = ["Run", "SweepError", "expand", "load_sweep", "parse_seeds"]
