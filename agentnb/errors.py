"""Errors agentnb raises in the caller."""

from __future__ import annotations


class AgentnbError(Exception):
    """Base class of every error agentnb itself raises."""


class AgentServerError(AgentnbError):
    """The agent server refused or failed a request (not the agent's own code)."""


class ServerUnavailable(AgentServerError):
    """The agent server cannot be reached, or the connection to it was lost."""


class AuthenticationError(AgentServerError):
    """The agent server refused the call's token."""


class VersionMismatch(AgentServerError):
    """The client and the agent server run agentnb versions that do not work together
    (a different major.minor version); the message names both.

    Attributes:
        client_version: the client's agentnb version.
        server_version: the server's agentnb version ('' for one older than 0.2, which does not tell it).
    """

    def __init__(self, message: str, *, client_version: str = "", server_version: str = "") -> None:
        super().__init__(message)
        self.client_version = client_version
        self.server_version = server_version


class AgentNotFound(AgentServerError, LookupError):
    """No agent with that id (or name) lives on the server."""


class TaskNotFound(AgentServerError, LookupError):
    """No result with that task id is held by the server (never created or expired)."""


class IntegrityError(AgentServerError):
    """A stored result failed its integrity check (it was changed outside agentnb); it was not unpickled."""


class TaskCancelled(AgentnbError):
    """The task was cancelled before it ran."""


class SerializationError(AgentnbError, TypeError):
    """A value could not be pickled (or unpickled) for the trip to or from a server."""


class RemoteError(AgentnbError):
    """An exception from an agent that could not be rebuilt as its own type.

    Attributes:
        remote_type: the module-qualified name of the remote exception's type.
        remote_traceback: the traceback text from the server.
    """

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {message}")
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class DeadlockError(AgentnbError):
    """A synchronous call would wait on an agent that is itself waiting on the caller.

    Agent A calling agent B synchronously while B calls A synchronously can never
    finish: each agent runs one call at a time. Make one of the two calls
    asynchronous (``@async_func``) or restructure the exchange.
    """


class DaemonError(AgentServerError):
    """A daemon could not be started, found or stopped; the message says why.

    In IPython it is shown as its message alone: the traceback through the
    extension would only hide what went wrong.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]
