"""Names operators give certificates, CAs, issuers and targets, checked as a whole."""

from __future__ import annotations

import re

from certman.errors import ValidationError

# Checked with fullmatch: re.match with "$" also takes a name followed by a newline ("web\n"),
# a second certificate that every listing shows as "web".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def name_problem(name: str, *, max_length: int) -> str:
    """Why ``name`` cannot name a thing ("" when it can), as the second half of a sentence."""
    if len(name) <= max_length and _NAME.fullmatch(name):
        return ""
    return f"use 1-{max_length} letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_name(name: str, what: str, *, max_length: int) -> None:
    """Refuse ``name`` for a ``what`` ("Certificate", "CA") unless it is a valid name."""
    problem = name_problem(name, max_length=max_length)
    if problem:
        raise ValidationError(f"{what} name {name!r} is not valid; {problem}.")
