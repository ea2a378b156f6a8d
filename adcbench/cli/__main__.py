"""`python -m adcbench.cli`: the same entry point as the `adcbench` script."""

from adcbench.cli import entry

entry()
