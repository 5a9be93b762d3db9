"""File names from uploads: never used as paths, and refused when they try to be one.

Blobs are stored by sha256, so a file name is only a label. Still, a name that walks out
of a directory (``../../etc/passwd``, ``C:\\Windows``, a NUL byte) is a sign of a hostile
or broken client and is refused with a coded error rather than quietly repaired; a
merely odd name (spaces, unicode, control characters) is cleaned into a safe label.
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import InvalidInput

MAX_FILENAME_BYTES = 255

_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE_CHARS = re.compile(r"[^\w.\- ()+,@=]", flags=re.UNICODE)


def safe_filename(name: str) -> str:
    """A safe label for ``name``, or ``InvalidInput`` when the name is a path."""
    if "\x00" in name:
        raise InvalidInput("file name contains a NUL byte", filename=repr(name))
    if "/" in name or "\\" in name or _DRIVE.match(name):
        raise InvalidInput(
            f"file name {name!r} contains a path (separators or a drive); send the bare name",
            filename=name,
        )
    if name in {".", ".."} or name.startswith(".."):
        raise InvalidInput(f"file name {name!r} is a path traversal", filename=name)
    cleaned = unicodedata.normalize("NFC", name)
    cleaned = "".join(ch for ch in cleaned if unicodedata.category(ch)[0] != "C")
    cleaned = _UNSAFE_CHARS.sub("_", cleaned).strip(" .")
    if not cleaned:
        raise InvalidInput(f"file name {name!r} has no usable characters", filename=name)
    encoded = cleaned.encode("utf-8")
    if len(encoded) > MAX_FILENAME_BYTES:
        stem, dot, ext = cleaned.rpartition(".")
        keep_ext = f".{ext}" if dot and len(ext) <= 16 else ""
        budget = MAX_FILENAME_BYTES - len(keep_ext.encode("utf-8"))
        stem_bytes = (stem if keep_ext else cleaned).encode("utf-8")[:budget]
        cleaned = stem_bytes.decode("utf-8", errors="ignore") + keep_ext
    return cleaned
