"""adcbench: the reference benchmark for communication-efficient split learning of ViTs.

Layers, each importing only those before it:
wire format -> methods -> split model -> training loop -> results/leaderboard -> CLI.
"""

__version__ = "0.1.0"
