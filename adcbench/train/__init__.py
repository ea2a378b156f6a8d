"""Layer 4, training: the client and server roles, the loop that drives them, the warm start.

Owns the roles, which turn batches into message bytes and bytes back into gradients
(roles.py), the run loop and its configuration (loop.py) and the CPU warm-start pretraining
(pretrain.py). Imports everything below (`transport`, `model`, `data`, `core`, `wire`); never
`sweep`, `report` or the CLI.
"""

from .loop import EVAL_POLICIES, RunConfig, resolve, run, seed_everything

__all__ = ["EVAL_POLICIES", "RunConfig", "resolve", "run", "seed_everything"]
