"""Which agents belong to which client, and when a client is gone for good.

A client creates its own agents as *owned* (``Call.owned``): they are deleted
when the client is gone, and the calls it queued for them are cancelled, so
that a client that exited, crashed or was killed leaves nothing of its own
running. Objects placed as detached (a notebook's daemon) are never owned.

A session that ends is not always a client gone: a network cut ends it too,
and the client opens a new one. So a session names its client (id, host and
pid, :data:`agentnb.wire.protocol.CLIENT_METADATA_KEY`). When it ends, its
agents are released at once if the client is on this host and its process is
gone; otherwise they wait :data:`RECONNECT_GRACE` seconds for the client's next
session, which takes them over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from agentnb.runtime_dir import pid_alive
from agentnb.server.session import ClientSession
from agentnb.wire import shm
from agentnb.wire.protocol import CLIENT_METADATA_KEY

_LOGGER = logging.getLogger(__name__)

RECONNECT_GRACE = 30.0  # seconds a client's agents wait for its next session
_LOOK_INTERVAL = 0.25  # while they wait, how often the client's process is looked at


class Client(NamedTuple):
    """The client process a session comes from."""

    client_id: str
    host_id: str
    pid: int

    @classmethod
    def of(cls, metadata: Any) -> Client | None:
        """The client a session's metadata names (``"<id> <host id> <pid>"``), if any."""
        value = next((v for k, v in metadata or () if k == CLIENT_METADATA_KEY), None)
        if value is None:
            return None
        try:
            client_id, host, pid = value.split(" ")
            return cls(client_id, host, int(pid))
        except (AttributeError, ValueError):
            return None

    def gone(self) -> bool:
        """Whether the client's process is known to be gone (only a client of this host can be)."""
        return bool(self.host_id) and self.host_id == shm.host_id() and not pid_alive(self.pid)


Release = Callable[[ClientSession, list], None]


class Owners:
    """The agents of clients whose session ended, until they come back or are gone."""

    def __init__(self, release: Release) -> None:
        self._release = release  # release(ended_session, agents): cancel their queued calls, delete them
        self._waiting: dict[str, list] = {}  # client id -> its agents, waiting for its next session
        self._lock = threading.Lock()

    def reclaim(self, client: Client | None, session: ClientSession) -> None:
        """A session opens: it takes over the agents of its client, if any wait."""
        if client is None:
            return
        with self._lock:
            agents = self._waiting.pop(client.client_id, None)
        if agents:
            session.owned.extend(agents)

    def ended(self, session: ClientSession, client: Client | None) -> None:
        """A session ended: release its client's agents now, or once it has not come back in time."""
        agents = [agent for agent in session.owned if not agent.deleted]
        session.owned.clear()
        if not agents:
            return
        if client is None or client.gone():
            self._release(session, agents)
            return
        with self._lock:
            self._waiting.setdefault(client.client_id, []).extend(agents)
        threading.Thread(target=self._await_return, args=(session, client), name="agentnb-orphans",
                         daemon=True).start()

    def _await_return(self, session: ClientSession, client: Client) -> None:
        deadline = time.monotonic() + RECONNECT_GRACE
        while time.monotonic() < deadline and not client.gone():
            with self._lock:
                if client.client_id not in self._waiting:
                    return  # its next session took them
            time.sleep(_LOOK_INTERVAL)
        with self._lock:
            agents = self._waiting.pop(client.client_id, None)
        if agents:
            self._release(session, agents)
