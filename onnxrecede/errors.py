"""One error base class for everything the user can cause.

The command line turns an :class:`OnnxRecedeError` into a one-line message and a non-zero exit
code, without a traceback. Messages say what is wrong, where (op type and node name first), and
how to fix it.
"""

from __future__ import annotations

#: Exit code of ``--fail-below`` / ``--target-speedup`` when the speedup is under the bar.
EXIT_TOO_SLOW = 5


class OnnxRecedeError(Exception):
    """Base class of every error caused by the user's input or environment."""

    exit_code = 2


class InputError(OnnxRecedeError):
    """A model, importances file or option is invalid."""


class ImportancesError(InputError):
    """The importances file is malformed or does not match the model."""


class RuntimeUnavailableError(OnnxRecedeError):
    """ONNX Runtime (or a requested execution provider) cannot be used."""

    exit_code = 3


class VerificationError(OnnxRecedeError):
    """The pruned model failed a validation step; nothing was written."""

    exit_code = 4


class AccuracyDropError(OnnxRecedeError):
    """``prune --max-accuracy-drop``: the pruned model lost more accuracy than allowed (it is
    still written)."""

    exit_code = 6
