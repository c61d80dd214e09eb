"""``agentnb.to_dist``: objects and classes of any picklable class, whatever their metaclass."""

from __future__ import annotations

import abc
import os
import pickle
import threading
import time
from typing import Any

import pytest
from helpers_runtime import run_script, write_script

import agentnb
from agentnb import AsyncResult, Msg, RpcObject, SerializationError, async_func

SLEEP = 1.0
AGENTS = 3

# How many LibraryAgents this process built (the server builds its own).
BUILT = 0


class Registering(type):
    """Another library's metaclass: it keeps a registry of its classes."""

    registry: dict[str, type] = {}

    def __new__(mcs, name: str, bases: tuple, namespace: dict) -> Any:
        cls = super().__new__(mcs, name, bases, namespace)
        mcs.registry[name] = cls
        return cls


class Notebook(metaclass=Registering):
    """An object with state changed after it was built."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.pages: list[str] = []

    def write(self, text: str) -> int:
        self.pages.append(text)
        return len(self.pages)

    def where(self) -> int:
        return os.getpid()


class LibraryAgent(abc.ABC):
    """An agent of another library: an ABC, with a constructor that counts where it runs."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        global BUILT
        BUILT += 1
        self.name = name
        self.delay = delay

    @abc.abstractmethod
    def reply(self, x: Msg) -> Msg: ...

    def built_here(self) -> int:
        return BUILT

    def _private(self) -> str:
        return "private"


class Researcher(LibraryAgent):
    def reply(self, x: Msg) -> Msg:
        time.sleep(self.delay)
        return Msg(self.name, f"{self.name} read {x.content}")

    @async_func  # agentnb's own mark works too
    def summary(self) -> str:
        return f"{self.name} summary"


def test_an_object_of_a_class_with_its_own_metaclass_travels_with_its_state(server) -> None:
    book = Notebook("ada")
    book.write("first page")  # state changed after construction: it travels too
    remote = agentnb.to_dist(book, to_dist=server.to_dist)
    assert isinstance(remote, RpcObject)
    assert type(book) is Notebook and type(Notebook) is Registering  # nothing about the class changed
    assert remote.write("second page") == 2  # sync by default: the value
    assert remote.pages == ["first page", "second page"]  # attribute reads are forwarded
    assert remote.where() != os.getpid()
    assert book.pages == ["first page"]  # the local object is left as it was
    with pytest.raises(AttributeError, match="private"):
        remote._pages  # noqa: B018


def test_a_class_and_its_arguments_are_built_on_the_server_only(server) -> None:
    before = BUILT
    agents = [agentnb.to_dist(Researcher, f"R{i}", delay=SLEEP, to_dist=server.to_dist, async_methods=["reply"])
              for i in range(AGENTS)]
    assert BUILT == before  # never built in this process
    assert agents[0].built_here() >= 1 and agents[0].name == "R0"

    start = time.monotonic()
    results = [agent.reply(Msg("user", f"paper {i}")) for i, agent in enumerate(agents)]
    assert all(isinstance(res, AsyncResult) for res in results)
    assert [res.content for res in results] == [f"R{i} read paper {i}" for i in range(AGENTS)]
    elapsed = time.monotonic() - start
    assert elapsed < 0.6 * AGENTS * SLEEP, f"{AGENTS} async replies took {elapsed:.2f} s: not in parallel"
    assert agents[0].summary().result(timeout=30) == "R0 summary"  # @async_func holds as well

    # A copy of the proxy (what another agent gets) keeps the kinds the caller chose.
    copy = pickle.loads(pickle.dumps(agents[1]))
    assert isinstance(copy.reply(Msg("user", "again")), AsyncResult)


def test_child_mode_and_a_script_s_own_classes(tmp_path) -> None:
    path = write_script(tmp_path, """
        import os
        import agentnb

        class Meta(type):
            pass

        class Tally(metaclass=Meta):
            def __init__(self, start):
                self.total = start

            def add(self, n):
                self.total += n
                return self.total

            def pid(self):
                return os.getpid()

        tally = agentnb.to_dist(Tally(10), async_methods="add")
        res = tally.add(5)
        print(type(res).__name__, res.result(), tally.total, tally.pid() != os.getpid())
        built = agentnb.to_dist(Tally, 1)
        print(built.add(1), type(Tally).__name__)
    """)
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["AsyncResult 15 15 True", "2 Meta"]


class HoldsALock:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_wrong_uses_are_refused_before_anything_is_sent(server) -> None:
    with pytest.raises(ValueError, match=r"async_methods 'answer'.*public methods: built_here, reply, summary"):
        agentnb.to_dist(Researcher, "R", to_dist=server.to_dist, async_methods=["answer"])
    with pytest.raises(TypeError, match=r"with a class.*agentnb.to_dist\(Notebook, \*args"):
        agentnb.to_dist(Notebook("x"), "extra", to_dist=server.to_dist)
    with pytest.raises(SerializationError):
        agentnb.to_dist(HoldsALock(), to_dist=server.to_dist)
    remote = agentnb.to_dist(Notebook("y"), to_dist=server.to_dist)
    with pytest.raises(TypeError, match="already distributed"):
        agentnb.to_dist(remote)
    with pytest.raises(TypeError, match="unknown to_dist option"):
        agentnb.to_dist(Notebook("z"), to_dist={"hots": "localhost"})
