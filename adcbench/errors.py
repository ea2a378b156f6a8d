"""Error types. Every user-facing error is an `AdcbenchError`: the CLI prints its message on one
line and exits with code 2, never a traceback."""


class AdcbenchError(Exception):
    """A problem the user can fix (bad input, missing data, bad bytes). Exit code 2."""

    exit_code = 2


class UnknownNameError(AdcbenchError, KeyError):
    """An unknown method, task or stage name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParamError(AdcbenchError, ValueError):
    """A parameter outside its valid range or of the wrong type."""


class WireFormatError(AdcbenchError, ValueError):
    """Message bytes that do not decode: truncated, corrupted or malformed."""


class DatasetNotFoundError(AdcbenchError, FileNotFoundError):
    """A dataset that is neither available locally nor reachable on the hub."""


class TrainingDivergedError(AdcbenchError, FloatingPointError):
    """The loss became NaN or infinite."""
