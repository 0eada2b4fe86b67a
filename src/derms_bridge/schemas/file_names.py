"""The one rule for the file names the hub passes to a store or to DERMS."""

from __future__ import annotations

import unicodedata

from derms_bridge.errors import BadFileName


def checked_file_name(name: str) -> str:
    """The name itself when it is one plain file name; BadFileName otherwise.

    Spaces and letters of any script are fine; a separator, `..`, or a control
    character could address another file or break a protocol's command line.
    """
    if not name or name.strip() != name:
        raise BadFileName(f"file name {name!r} is empty or starts or ends with a space")
    if "/" in name or "\\" in name:
        raise BadFileName(f"file name {name!r} contains a path separator")
    if name in {".", ".."} or ".." in name:
        raise BadFileName(f"file name {name!r} contains '..'")
    if any(unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"} for char in name):
        raise BadFileName(f"file name {name!r} contains a control character")
    if len(name.encode()) > 255:
        raise BadFileName(f"file name {name[:40]!r}... is longer than 255 bytes")
    return name
