"""Text cut to a CPMCS field's limit, the cut shown: flows 12 and 14 fit DERMS's comments,
flow 8 a device's errorMessage."""

from __future__ import annotations

#: Ends text that was cut to CPMCS's limit, so that a reader in CPMCS sees the cut.
CUT_MARK = "..."


def fit_to(text: str, limit: int) -> str:
    """The text within `limit` characters: a longer one keeps its first `limit - 3` and ends
    in "..."."""
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARK)] + CUT_MARK
