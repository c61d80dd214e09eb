"""How classes reach servers: by value from ``__main__`` (no registration), by reference when importable."""

from __future__ import annotations

from agents_for_tests import Worker
from helpers_runtime import run_script, write_script

from agentnb import AgentBase, Msg, RpcMeta


class Doubler(AgentBase):
    """Overrides reply without @async_func, as the seed's WebAgent does."""

    def reply(self, x: Msg | None = None) -> Msg:
        return Msg(self.name, content=x.content * 2)


def test_class_defined_in_main_needs_no_registration(tmp_path, server) -> None:
    path = write_script(tmp_path, f"""
        import os
        from agentnb import AgentBase, Msg

        GREETING = "hello from a script"

        def shout(text):
            return text.upper()

        class ScriptAgent(AgentBase):
            def reply(self, x=None):
                return Msg(self.name, content=shout(GREETING) + " / " + x.content)

            def where(self):
                return os.getpid(), type(self).__module__

        options = {{"host": "{server.host}", "port": {server.port}, "token": "{server.token}"}}
        for agent in (ScriptAgent("child", to_dist=True), ScriptAgent("independent").to_dist(**options)):
            pid, module = agent.where()
            print(agent.name, pid != os.getpid(), module, agent(Msg("user", content="hi")).content)
    """)
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "child True __main__ HELLO FROM A SCRIPT / hi",
        "independent True __main__ HELLO FROM A SCRIPT / hi",
    ]


def test_redefining_a_class_and_distributing_again_uses_the_new_code(tmp_path) -> None:
    path = write_script(tmp_path, """
        from agentnb import RpcMeta

        class Greeter(metaclass=RpcMeta):
            def greet(self):
                return "old"

        old = Greeter(to_dist=True)

        class Greeter(metaclass=RpcMeta):
            def greet(self):
                return "new"

            def extra(self):
                return "added"

        new = Greeter(to_dist=True)
        print(old.greet(), new.greet(), new.extra())
    """)
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["old", "new", "added"]


def test_class_defined_in_a_function_travels_by_value(server) -> None:
    # Like a notebook cell's class: it cannot be imported by name anywhere.
    class Local(metaclass=RpcMeta):
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def times(self, x: int) -> int:
            return self.factor * x

    remote = Local(3, to_dist=server.to_dist)
    assert remote.times(5) == 15


def test_importable_class_travels_by_reference(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    assert worker.class_is_imported()
    assert worker.reply(Msg("user", content=1)).content == "W0(1)"


def test_undecorated_reply_override_stays_async(server) -> None:
    agent = Doubler("D", to_dist=server.to_dist)
    result = agent.reply(Msg("user", content=4))
    assert type(result).__name__ == "AsyncResult"
    assert result.content == 8
