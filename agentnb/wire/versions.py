"""Which agentnb versions work together: a client and a server of the same major.minor version.

The wire contract may change between minor versions (before 1.0, as semantic
versioning allows), never between patch releases. So the handshake
(:mod:`agentnb.wire.handshake`) tells each side the other's version, and a
difference in major.minor is refused at once, naming both versions, instead of
failing later on a message one side does not understand. A patch difference
works; the client logs it.

An empty version is that of a side older than this exchange (before 0.2).
"""

from __future__ import annotations

import logging

from agentnb.errors import VersionMismatch

_LOGGER = logging.getLogger(__name__)

# The trailing metadata key under which a server that refuses a client names its own version.
VERSION_METADATA_KEY = "agentnb-version"


def release(version: str) -> tuple[str, ...]:
    """The part of ``version`` that must match: ``(major, minor)``; empty for an unknown version."""
    parts = version.split(".")
    return tuple(parts[:2]) if len(parts) >= 2 and all(parts[:2]) else ()


def compatible(client: str, server: str) -> bool:
    """Whether a client of version ``client`` and a server of version ``server`` work together."""
    return bool(release(client)) and release(client) == release(server)


def _named(version: str) -> str:
    return f"agentnb {version}" if version else "an agentnb older than 0.2 (one that does not tell its version)"


def mismatch(client: str, server: str, server_name: str) -> VersionMismatch:
    """The error of a client of version ``client`` and the ``server_name`` (``agent server at ...``)
    of version ``server``, which do not work together."""
    here = f", or pip install 'agentnb=={server}' here and restart this Python process" if server else ""
    return VersionMismatch(
        f"this client runs agentnb {client or '?'} and the {server_name} runs {_named(server)}: a client and a "
        "server work together only with the same major.minor version. Use one version on both sides: "
        f"pip install 'agentnb=={client}' where the server runs and restart the server{here}",
        client_version=client, server_version=server)


def refusal(client: str, server: str) -> str:
    """What a server of version ``server`` answers a client of version ``client`` that it refuses
    (the details of the FAILED_PRECONDITION, for a client too old to read the trailing version)."""
    return (f"this agent server runs agentnb {server} and the client runs {_named(client)}: a client and a "
            "server work together only with the same major.minor version")


def check_server(client: str, server: str, server_name: str) -> None:
    """On the client's side: raise :class:`VersionMismatch` unless ``server`` works with ``client``;
    log a warning when only their patch releases differ.

    Raises:
        VersionMismatch: naming both versions.
    """
    if not compatible(client, server):
        raise mismatch(client, server, server_name)
    if client != server:
        _LOGGER.warning("this client runs agentnb %s and the %s runs agentnb %s (a patch release apart: "
                        "they work together)", client, server_name, server)
