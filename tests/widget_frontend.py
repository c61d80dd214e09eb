"""What a browser would hold of a real kernel's widgets: the models rebuilt from its comm messages.

The notebook-side tests run cells in a real IPython kernel (jupyter_client) and replay the
kernel's ``comm_open`` / ``comm_msg`` messages into the widget models a frontend keeps
(:class:`Frontend`), then read the text or the SVG a user would see in them.
"""

from __future__ import annotations

import html
import queue
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kernel_fixtures import Kernel

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
TIMEOUT = 60.0


@dataclass
class Frontend:
    """The widget models a frontend would hold, rebuilt from the kernel's comm messages."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)  # data of this cell's rich outputs
    first_states: dict[str, dict[str, Any]] = field(default_factory=dict)  # each model as it was opened
    values: dict[str, list[Any]] = field(default_factory=dict)  # every value each model showed, in order

    def receive(self, msg: dict[str, Any], cell: str) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = dict(content["data"]["state"])
            self.models[content["comm_id"]] = state
            self.first_states[content["comm_id"]] = dict(state)
            self.values[content["comm_id"]] = [state.get("value")]
        elif kind == "comm_msg" and content["data"].get("method") == "update":
            update = content["data"]["state"]
            self.models.setdefault(content["comm_id"], {}).update(update)
            if "value" in update:
                self.values.setdefault(content["comm_id"], []).append(update["value"])
        elif kind in ("execute_result", "display_data") and msg["parent_header"].get("msg_id") == cell:
            self.outputs.append(content["data"])

    def child(self, ref: str) -> dict[str, Any]:
        return self.models[ref.removeprefix("IPY_MODEL_")]

    def boxes(self, css_class: str) -> list[dict[str, Any]]:
        return [m for m in self.models.values() if css_class in m.get("_dom_classes", ())]

    def shown(self) -> list[str]:
        """The text of every agentnb widget (for failure messages)."""
        return [self.texts(box) for css in ("agentnb-progress", "agentnb-result") for box in self.boxes(css)]

    def texts(self, box: dict[str, Any]) -> str:
        """The text shown in ``box`` and its descendants, without markup: ``"text | text"``."""
        parts = []
        for ref in box.get("children", ()):
            child = self.child(ref)
            if isinstance(child.get("value"), str):
                parts.append(html.unescape(re.sub(r"<[^>]+>", "", child["value"])).strip())
            parts.append(self.texts(child))
        return " | ".join(p for p in parts if p)

    def timelines(self) -> dict[str, str]:
        """The SVG shown by each timeline widget, by model id."""
        return {key: model.get("value", "") for key, model in self.models.items()
                if "agentnb-timeline" in model.get("_dom_classes", ())}


def run_watching(kernel: Kernel, code: str, until: Callable[[Frontend], bool], what: str,
                 timeout: float = TIMEOUT) -> Frontend:
    """Run a cell and read the kernel's messages until it is idle and ``until(frontend)`` holds."""
    frontend = Frontend()
    cell = kernel.submit(code)
    deadline = time.monotonic() + timeout
    idle = False
    while not (idle and until(frontend)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; shown: {frontend.shown()}; "
                                 f"timelines: {frontend.timelines()}")
        try:
            msg = kernel.client.get_iopub_msg(timeout=min(remaining, 0.5))
        except queue.Empty:
            continue
        frontend.receive(msg, cell)
        if msg["parent_header"].get("msg_id") != cell:
            continue
        if msg["msg_type"] == "error":
            raise AssertionError("cell failed: " + "\n".join(msg["content"]["traceback"]))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    return frontend
