"""Layer 7, the command line: `adcbench run | sweep | methods | tasks | pretrain | leaderboard | serve | replay`.

One module per command family; `app.py` holds the group and the error policy: user errors
(unknown names, bad parameters, missing data, bad bytes, NaN loss) print one line to stderr and
exit with code 2, never a traceback. Imports any layer below; nothing imports it.
"""

from adcbench.cli import info, leaderboard, pretrain, run, serve, sweep  # noqa: F401  (register the commands)
from adcbench.cli.app import entry, main
from adcbench.cli.options import parse_bytes

__all__ = ["entry", "main", "parse_bytes"]
