"""How daemons look: an HTML table in a notebook, aligned text elsewhere."""

from __future__ import annotations

import html
from collections.abc import Sequence

import agentnb
from agentnb import ServerRecord, ServerStatus

LIST_COLUMNS = ("name", "address", "where", "pid", "uptime", "capacity", "busy", "queued", "agents", "kind", "pool",
                "version", "default")
AGENT_COLUMNS = ("name", "id", "class", "pending")


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def pool_label(record: ServerRecord) -> str:
    """``lab 1/2`` for the second of the two replicas of pool ``lab``; empty for a lone server."""
    if record.pool is None:
        return ""
    return f"{record.pool} {record.replica + 1}/{record.replicas}"


def version_label(version: str) -> str:
    """The agentnb version a server told; when it is not this kernel's, this one's beside it."""
    if not version:
        return "?"
    return version if version == agentnb.__version__ else f"{version} (here {agentnb.__version__})"


def status_row(status: ServerStatus) -> dict[str, str]:
    """One server as the cells of a ``%agent_server list`` row."""
    record, info = status.record, status.info

    def live(attr: str) -> str:
        return str(getattr(info, attr)) if info is not None else "?"

    # A server of another version told its own; the engine of a cluster launcher's may say why it is gone.
    why_not = status.ended or ("other version" if status.version else "unreachable")

    return {
        "name": record.name,
        "address": record.address,
        "where": record.where or "-",
        "pid": str(record.pid),
        "uptime": format_duration(status.uptime),
        "capacity": live("capacity") if info is not None else str(record.capacity),
        "busy": live("busy"),
        "queued": live("queued"),
        "agents": live("agents"),
        "kind": record.kind if info is not None else f"{record.kind} ({why_not})",
        "pool": pool_label(record),
        "version": version_label(status.version),
        "default": "*" if status.is_default else "",
    }


def text_table(columns: Sequence[str], rows: Sequence[dict[str, str]]) -> str:
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)


def html_table(columns: Sequence[str], rows: Sequence[dict[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(row[c])}</td>" for c in columns) + "</tr>" for row in rows)
    return f'<table class="agentnb-daemons"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class DaemonTable:
    """The result of ``%agent_server list``: every recorded server of this user."""

    def __init__(self, statuses: Sequence[ServerStatus]) -> None:
        self.statuses = list(statuses)

    def _rows(self) -> list[dict[str, str]]:
        return [status_row(s) for s in self.statuses]

    def _repr_html_(self) -> str:
        if not self.statuses:
            return f"<p>{html.escape(_NO_SERVERS)}</p>"
        return html_table(LIST_COLUMNS, self._rows())

    def __repr__(self) -> str:
        if not self.statuses:
            return _NO_SERVERS
        return text_table(LIST_COLUMNS, self._rows())


_NO_SERVERS = "No agent server is running (start one with %agent_server start)."


class DaemonDetail:
    """The result of ``%agent_server status NAME``: one server and its agents."""

    def __init__(self, status: ServerStatus) -> None:
        self.status = status

    def _fields(self) -> dict[str, str]:
        status, record = self.status, self.status.record
        fields = status_row(status)
        fields["state"] = "running" if status.reachable else f"not answering: {status.error}"
        fields["log"] = record.log_path or "-"
        if status.info is not None:
            fields["completed"] = str(status.info.completed)
            fields["pool"] = status.info.pool_type
        return fields

    def _agent_rows(self) -> list[dict[str, str]]:
        return [{"name": a.name or "-", "id": a.agent_id, "class": a.class_name, "pending": str(a.pending)}
                for a in self.status.agents]

    def _repr_html_(self) -> str:
        fields = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                         for k, v in self._fields().items())
        agents = (html_table(AGENT_COLUMNS, self._agent_rows()) if self.status.agents
                  else "<p>No agents.</p>")
        return f"<table class='agentnb-daemon'>{fields}</table><h4>Agents</h4>{agents}"

    def __repr__(self) -> str:
        fields = self._fields()
        width = max(len(k) for k in fields)
        lines = [f"{k.ljust(width)}  {v}" for k, v in fields.items()]
        lines.append("")
        lines.append(text_table(AGENT_COLUMNS, self._agent_rows()) if self.status.agents else "No agents.")
        return "\n".join(lines)
