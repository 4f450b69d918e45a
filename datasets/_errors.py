"""The one error class of the datasets package."""

from __future__ import annotations


class DatasetError(ValueError):
    """Bad generation arguments or an unreadable manifest; the message is one line for users.

    ``datasets`` depends on no other package of the project, so the CLI translates this into
    its own user-error class.
    """
