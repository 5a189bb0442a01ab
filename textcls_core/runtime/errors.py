"""Errors a user can cause. The CLI prints their message and exits non-zero, without a traceback."""


class TextclsError(Exception):
    """Base class: the message names the input, what is wrong and how to fix it."""


class ConfigError(TextclsError):
    """A config key or value is invalid."""


class DataError(TextclsError):
    """The input data cannot be used as given (missing file, bad column, too few classes...)."""


class LabelRangeError(TextclsError):
    """Label ids outside 0..C-1: caught on the CPU instead of a CUDA device-side assert."""
