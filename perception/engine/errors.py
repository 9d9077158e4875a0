"""Errors a user can act on.

The command-line tools print these as one line (``error: ...``) instead of a traceback; set
``PERCEPTION_DEBUG=1`` to see the traceback as well.
"""


class PerceptionError(Exception):
    """Base class of errors caused by input the user controls: configs, files, checkpoints."""


class ConfigError(PerceptionError, ValueError):
    """A config file or a ``--cfg-options`` override is wrong."""


class CheckpointError(PerceptionError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


class DataError(PerceptionError, ValueError):
    """A data file is missing or malformed; the message names the file and the field."""
