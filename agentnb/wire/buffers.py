"""Raw memory for large payloads: copies that let go of the GIL, and fresh memory that faults in large pages.

A copy of tens of MiB done by ``bytes(view)`` or a slice assignment holds the
GIL for all of it, stopping every other thread of the process (gRPC's
included); ``ctypes.memmove`` lets go of it. And most of the cost of copying
into fresh memory is its first touch, one page fault per 4 KiB page: a new
``bytes`` or ``bytearray`` of several MiB is advised to use transparent huge
pages (``MADV_HUGEPAGE``; honoured where the kernel's setting is ``always`` or
``madvise``), which makes the faults 512 times fewer.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
from typing import Any


class _PyBuffer(ctypes.Structure):
    """CPython's ``Py_buffer`` (part of the stable ABI since 3.11)."""

    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = (ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int)
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = (ctypes.POINTER(_PyBuffer),)
_release_buffer.restype = None
# bytes and bytearray objects of a given size, not yet filled in (the C API's way to build them).
new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
new_bytes.restype = ctypes.py_object
new_bytes.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
new_bytearray = ctypes.pythonapi.PyByteArray_FromStringAndSize
new_bytearray.restype = ctypes.py_object
new_bytearray.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
_bytearray_address = ctypes.pythonapi.PyByteArray_AsString
_bytearray_address.restype = ctypes.c_void_p
_bytearray_address.argtypes = (ctypes.py_object,)
_bytes_address = ctypes.pythonapi.PyBytes_AsString
_bytes_address.restype = ctypes.c_void_p
_bytes_address.argtypes = (ctypes.py_object,)

_PAGE = mmap.PAGESIZE
_HUGE_PAGE = 2**21
# Below this, a fresh buffer is not worth a system call (few faults, and maybe memory malloc reuses).
_ADVISE_BYTES = 4 * _HUGE_PAGE
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
_madvise: Any = None  # not on Linux (or no madvise): fresh memory faults in small pages
with contextlib.suppress(OSError, AttributeError):
    _madvise = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _madvise.restype = ctypes.c_int


def address(data: bytes | bytearray) -> int:
    """Where the contents of a ``bytes`` or ``bytearray`` object are in memory."""
    return _bytes_address(data) if type(data) is bytes else _bytearray_address(data)


def address_of(source: Any) -> int:
    """Where the contents of the contiguous buffer ``source`` (of any type) are in memory, now."""
    view = _PyBuffer()
    _get_buffer(source, ctypes.byref(view), 0)
    try:
        return int(view.buf or 0)
    finally:
        _release_buffer(ctypes.byref(view))


def advise_huge_pages(start: int, size: int) -> None:
    """Ask that the not yet touched memory at ``start`` (``size`` bytes) fault in huge pages; best effort."""
    if _madvise is None or _MADV_HUGEPAGE is None or size < _ADVISE_BYTES:
        return
    first = (start + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    end = (start + size) & ~(_HUGE_PAGE - 1)
    if end > first:
        _madvise(first, end - first, _MADV_HUGEPAGE)  # refused (EINVAL) where the kernel has no THP: no matter


def fresh(size: int, kind: type[bytes] | type[bytearray] = bytes) -> bytes | bytearray:
    """A new ``bytes`` (or ``bytearray``) of ``size`` bytes, not filled in yet, to be written before anyone sees it.

    Its memory is advised to fault in huge pages (see the module's docstring).
    """
    target = (new_bytes if kind is bytes else new_bytearray)(None, size)
    if size:
        advise_huge_pages(address(target), size)
    return target


def copy_into(target: int, source: Any) -> int:
    """Copy the contiguous buffer ``source`` to memory address ``target`` without the GIL; return its size."""
    view = _PyBuffer()
    _get_buffer(source, ctypes.byref(view), 0)  # PyBUF_SIMPLE: contiguous bytes, or it raises
    try:
        if view.len:
            ctypes.memmove(target, view.buf, view.len)
        return int(view.len)
    finally:
        _release_buffer(ctypes.byref(view))


def copy_out(source: Any, kind: type[bytes] | type[bytearray] = bytes) -> bytes | bytearray:
    """A new ``bytes`` (or ``bytearray``) holding a copy of the contiguous buffer ``source``, copied without the GIL."""
    view = _PyBuffer()
    _get_buffer(source, ctypes.byref(view), 0)
    try:
        target = fresh(view.len, kind)
        if view.len:
            ctypes.memmove(address(target), view.buf, view.len)
    finally:
        _release_buffer(ctypes.byref(view))
    return target
