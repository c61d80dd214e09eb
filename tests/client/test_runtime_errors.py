"""Remote exceptions come back as their own type, with the remote traceback."""

from __future__ import annotations

import traceback

import pytest
from agents_for_tests import Counter, CustomError, Worker
from helpers_runtime import run_script, write_script

import agentnb
from agentnb import RemoteError, SerializationError


def test_sync_call_raises_the_remote_exception_type_with_its_traceback(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    with pytest.raises(CustomError) as info:
        worker.fail("bad input", code=5)
    error = info.value
    assert str(error) == "bad input" and error.code == 5
    assert "in fail" in error.remote_traceback  # the agent's own frame
    assert "raise CustomError" in error.remote_traceback
    assert any(note.startswith("(raised in W0 ") for note in error.__notes__)  # which agent, on which server
    assert "raise CustomError" in "".join(traceback.format_exception(error))  # the agent's frame, as a frame
    assert worker.echo("still works") == "still works"


def test_async_call_raises_from_result(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    result = worker.fail_later("late failure")
    with pytest.raises(ValueError, match="late failure") as info:
        result.result(timeout=30)
    assert "fail_later" in info.value.remote_traceback
    with pytest.raises(ValueError):  # the same error again, not a different one
        result.result()


def test_exception_that_cannot_travel_becomes_remote_error(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    with pytest.raises(RemoteError) as info:
        worker.fail_unpicklable()
    assert info.value.remote_type.endswith("UnpicklableError")
    assert "cannot travel" in str(info.value)
    assert "fail_unpicklable" in info.value.remote_traceback


def test_failing_constructor_raises_its_error_when_the_proxy_is_used(server) -> None:
    counter = Counter(fail=True, to_dist=server.to_dist)
    with pytest.raises(CustomError, match="refusing to start") as info:
        counter.add()
    assert info.value.code == 7
    with pytest.raises(CustomError):
        agentnb.wait_created(Counter(fail=True, to_dist=True))


def test_exception_class_defined_in_main_is_caught_by_its_own_class(tmp_path) -> None:
    path = write_script(tmp_path, """
        from agentnb import RpcMeta

        class ScriptError(Exception):
            pass

        class Faulty(metaclass=RpcMeta):
            def explode(self):
                raise ScriptError("from the script's class")

        agent = Faulty(to_dist=True)
        try:
            agent.explode()
        except ScriptError as exc:
            print("caught", type(exc).__name__, "explode" in exc.remote_traceback)
    """)
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "caught ScriptError True"


def test_values_that_cannot_travel_are_serialization_errors(server) -> None:
    import threading

    worker = Worker("W0", to_dist=server.to_dist)
    with pytest.raises(SerializationError, match="argument"):
        worker.echo(threading.Lock())  # refused in the caller
    with pytest.raises(SerializationError, match="make_lock"):
        worker.make_lock()  # the result, refused on the server
    assert worker.echo("fine") == "fine"
