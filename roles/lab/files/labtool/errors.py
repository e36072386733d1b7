"""The lab tool's errors: a message for the user and details for the JSON result.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

from typing import Any


class LabError(Exception):
    """A failure with a message for the user and optional details for the JSON result."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class VmError(Exception):
    """A VM failure with a message for the user and optional details for the JSON result."""

    def __init__(self, msg: str, **details) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
