"""Remote tracebacks that read like local ones.

An agent's exception travels back to its caller with the frames it went
through on the server (:func:`remote_frames`), agentnb's own frames left out.
The caller rebuilds them as real traceback entries (:func:`rebuild`), so the
exception raised in the caller shows the agent's code as it would show a local
error: the file (or, in a notebook, the cell: ``Cell In[7], line 13``), the
line and its text, and the carets under the failing expression. Code defined in
a cell or a script travels with its file name (see :mod:`agentnb.wire.codec`),
so the caller, who has that source, can show it.

A rebuilt entry is a frame of a small piece of code compiled under the remote
file's name, whose failing instruction sits at the remote line and columns;
nothing the server sent is ever executed.
"""

from __future__ import annotations

import functools
import os
import traceback
import types
from typing import NamedTuple

# The agentnb package: frames of its files are the library's, not the user's.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# The most frames of one remote traceback kept (the innermost: a deep recursion keeps its end).
MAX_FRAMES = 64
# Bounds on what a server may say of a frame (a rebuilt frame compiles a name that wide).
_MAX_LINE = 10_000_000
_MAX_COLUMN = 4096
_MAX_BODY = 100_000  # lines from a function's first line to the failing one


class RemoteFrame(NamedTuple):
    """Where a remote traceback passed: a file, a function and a position in a line."""

    filename: str
    name: str
    lineno: int
    colno: int | None = None  # UTF-8 byte offsets, as in code positions
    end_colno: int | None = None
    end_lineno: int | None = None
    firstlineno: int | None = None  # the first line of the function (its ``def``)


def is_library_file(filename: str) -> bool:
    """Whether ``filename`` is one of agentnb's own source files."""
    return filename.startswith(PACKAGE_DIR)


def remote_frames(tb: types.TracebackType | None) -> tuple[RemoteFrame, ...]:
    """The frames of ``tb`` outside agentnb, outermost first (at most :data:`MAX_FRAMES`)."""
    codes = [frame.f_code for frame, _ in traceback.walk_tb(tb)]
    frames = [RemoteFrame(f.filename, f.name, f.lineno or 0, f.colno, f.end_colno, f.end_lineno, code.co_firstlineno)
              for f, code in zip(traceback.extract_tb(tb), codes, strict=True) if not is_library_file(f.filename)]
    return tuple(frames[-MAX_FRAMES:])


def rebuild(frames: tuple | list) -> types.TracebackType | None:
    """Traceback entries standing for ``frames`` (outermost first), chained; None if there are none.

    A frame that cannot be rebuilt (a malformed one) is left out.
    """
    tb: types.TracebackType | None = None
    for frame in reversed(list(frames)[-MAX_FRAMES:]):
        try:
            entry = _entry(RemoteFrame(*frame))
        except Exception:  # bad data from the server: that frame is not shown
            continue
        tb = types.TracebackType(tb, *entry)
    return tb


def user_part(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without its leading entries in agentnb's own files (the library frames a
    caught exception passed through before it was kept): what is left is the
    remote part, which a kept exception is raised again with."""
    while tb is not None and is_library_file(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _entry(frame: RemoteFrame) -> tuple[types.FrameType, int, int]:
    """A (frame, last instruction, line) triple at ``frame``'s position."""
    lineno = _bounded(frame.lineno, 1, _MAX_LINE)
    first = lineno if frame.firstlineno is None else _bounded(frame.firstlineno, max(1, lineno - _MAX_BODY), lineno)
    code = _code(str(frame.filename), str(frame.name), first, lineno - first, *_span(frame))
    try:
        exec(code, {"__builtins__": {}})  # its one instruction looks up an unknown name: NameError
    except NameError as exc:
        tb = exc.__traceback__.tb_next  # type: ignore[union-attr]  # (the first entry is this function's)
        assert tb is not None and tb.tb_frame.f_code is code
        return tb.tb_frame, tb.tb_lasti, tb.tb_lineno
    raise AssertionError("a rebuilt frame did not raise")


def _span(frame: RemoteFrame) -> tuple[int, int]:
    """Column and width of the failing expression on its first line (the width of the
    whole rest of the line when the expression goes on to the next lines)."""
    if frame.colno is None or frame.end_colno is None:
        return 0, 1
    colno = _bounded(frame.colno, 0, _MAX_COLUMN)
    if frame.end_lineno is not None and frame.end_lineno != frame.lineno:
        import linecache

        line = linecache.getline(str(frame.filename), _bounded(frame.lineno, 1, _MAX_LINE))
        return colno, max(1, len(line.rstrip().encode()) - colno)
    return colno, _bounded(frame.end_colno - colno, 1, _MAX_COLUMN)


def _bounded(value: object, low: int, high: int) -> int:
    return min(max(int(value), low), high)  # type: ignore[call-overload]


@functools.lru_cache(maxsize=1024)
def _code(filename: str, name: str, first: int, offset: int, colno: int, width: int) -> types.CodeType:
    """Code of ``filename`` named ``name``, starting at line ``first`` (as the remote
    function does: tools that show a function's source from its first line find
    the right one), whose only instruction, ``offset`` lines further, at columns
    ``colno`` to ``colno + width``, fails."""
    # A name of ``width`` underscores at ``colno`` (in parentheses, where indentation is free).
    source = "\n" * offset + ("_" * width if colno == 0 else "(" + " " * (colno - 1) + "_" * width + ")")
    code = compile(source, filename, "exec")
    return code.replace(co_firstlineno=first, co_name=name, co_qualname=name)
