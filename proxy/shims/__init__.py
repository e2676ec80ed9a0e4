"""Every use of another library's private names lives here, one module per
library. Each module checks, when it is imported (at worker start-up), that the
names it relies on still exist in the pinned version, and fails with a clear
message otherwise, rather than in the middle of a request."""
from __future__ import annotations


class ShimMismatch(RuntimeError):
    """A pinned library no longer has a private name the gateway relies on."""


def require(owner, names: tuple[str, ...], library: str) -> None:
    """Raise ShimMismatch naming every attribute of `owner` that is missing."""
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        raise ShimMismatch(
            f"{library}: {getattr(owner, '__qualname__', owner)} has no "
            f"{', '.join(missing)}; the gateway's shim (proxy/shims/) was written for the "
            "version pinned in requirements.txt. Install that version or update the shim.")
