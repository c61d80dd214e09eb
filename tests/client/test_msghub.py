"""Group conversations: agentnb.msghub with local and distributed participants, and proxy identity."""

from __future__ import annotations

import threading

import pytest

from agentnb import AgentBase, Msg, RpcMeta, concurrent, msghub

GATE_LIMIT = 30.0  # seconds a gated reply waits at most: a broken test fails instead of hanging


class Talker(AgentBase):
    """Replies with what it has heard so far; a gated one waits until open_gate()."""

    def __init__(self, name: str, gated: bool = False) -> None:
        super().__init__(name)
        self._gate = threading.Event()
        if not gated:
            self._gate.set()

    def reply(self, x: Msg | None = None) -> Msg:
        if not self._gate.wait(GATE_LIMIT):
            raise TimeoutError(f"{self.name}'s gate was never opened")
        return Msg(self.name, f"{self.name} after {len(self.memory)}")

    @concurrent
    def open_gate(self) -> None:
        self._gate.set()

    def heard(self) -> list[str]:
        return [f"{m.name}: {m.content}" for m in self.memory]

    def myself(self) -> Talker:
        return self

    def is_me(self, other: object) -> tuple[bool, bool]:
        return self == other, other == self


class Grumpy(Talker):
    def observe(self, x) -> None:
        raise ValueError(f"{self.name} refuses to listen")


class Mute(metaclass=RpcMeta):
    def __init__(self, name: str) -> None:
        self.name = name


ANNOUNCEMENT = Msg("host", "welcome", role="system")


def _heard(agent) -> list[str]:
    return agent.heard()


# -- identity ---------------------------------------------------------------------------------------


def test_two_proxies_of_one_agent_are_equal(two_servers) -> None:
    first, second = two_servers
    a = Talker("a", to_dist=first.to_dist)
    b = Talker("b", to_dist=second.to_dist)
    again = a.myself()  # a proxy the agent's server made
    assert again is not a and again == a and hash(again) == hash(a) and len({a, again, b}) == 2
    assert a != b and a != "a" and a != a.agent_id
    local = Talker("a")
    assert local != local.to_dist(**first.to_dist)  # to_dist builds a new agent: not the local one


def test_on_its_server_an_agent_equals_a_proxy_to_itself(server) -> None:
    a, b = Talker("a", to_dist=server.to_dist), Talker("b", to_dist=server.to_dist)
    assert a.is_me(a) == (True, True)  # self == proxy and proxy == self, there
    assert a.is_me(b) == (False, False)


# -- the hub ----------------------------------------------------------------------------------------


def test_everyone_hears_the_announcement_and_the_others_not_themselves(two_servers) -> None:
    first, second = two_servers
    pro = Talker("pro", to_dist=first.to_dist)
    con = Talker("con", to_dist=second.to_dist)
    judge = Talker("judge")  # local: it hears the distributed speakers
    with msghub([pro, con, judge], announcement=ANNOUNCEMENT) as hub:
        pro_said = pro()
        con_said = con()
        judge_said = judge()
        hub.broadcast(Msg("host", "next round", role="system"))
        pro()
    assert pro_said.content == "pro after 1"  # the announcement
    assert con_said.content == "con after 2"  # ... and pro's reply, heard before con answered
    assert judge_said.content == "judge after 3"
    assert _heard(pro) == ["host: welcome", "con: con after 2", "judge: judge after 3", "host: next round"]
    assert _heard(con) == ["host: welcome", "pro: pro after 1", "judge: judge after 3", "host: next round",
                           "pro: pro after 4"]
    assert _heard(judge) == ["host: welcome", "pro: pro after 1", "con: con after 2", "host: next round",
                             "pro: pro after 4"]
    # Outside the block, a reply is heard by nobody.
    pro()
    assert len(_heard(con)) == 5


def test_calling_a_distributed_speaker_does_not_wait(two_servers) -> None:
    first, second = two_servers
    slow = Talker("slow", gated=True, to_dist=first.to_dist)
    quick = Talker("quick", to_dist=second.to_dist)
    with msghub([slow, quick]) as hub:
        said = slow()  # its reply waits on the gate: the call must return anyway
        answer = quick()  # and quick's turn comes after it has heard slow's reply
        assert not said.done() and not answer.done()
        with pytest.raises(TimeoutError):
            hub.wait(timeout=0.1)  # quick has not heard slow yet
        slow.open_gate()
        assert answer.result(timeout=GATE_LIMIT).content == "quick after 1"
    assert _heard(quick) == ["slow: slow after 0"]
    assert _heard(slow) == ["quick: quick after 1"]


def test_a_local_speaker_is_heard_by_distributed_participants(server) -> None:
    host = Talker("host")
    guest = Talker("guest", to_dist=server.to_dist)
    with msghub([host, guest]):
        host()
        said = guest()
    assert said.content == "guest after 1"
    assert _heard(host) == ["guest: guest after 1"]


def test_the_same_agent_twice_is_one_participant_and_never_observes_itself(server) -> None:
    a = Talker("a", to_dist=server.to_dist)
    with msghub([a, a.myself()]) as hub:
        assert len(hub.participants) == 1
        assert a().result(timeout=GATE_LIMIT).content == "a after 0"  # no DeadlockError, no self-observation
    assert _heard(a) == []


def test_participants_join_and_leave(two_servers) -> None:
    first, second = two_servers
    a, b = Talker("a", to_dist=first.to_dist), Talker("b", to_dist=second.to_dist)
    c = Talker("c")
    with msghub([a, b], announcement=ANNOUNCEMENT) as hub:
        a()
        hub.add(c)  # hears what follows, not the announcement
        hub.add(a)  # already in: skipped
        b()
        hub.delete(a.myself())  # any proxy of the agent removes it
        c()
        hub.delete(c)
        b()
    assert [p.name for p in hub.participants] == ["b"]
    assert _heard(c) == ["b: b after 2"]
    assert _heard(a) == ["host: welcome", "b: b after 2"]
    assert _heard(b) == ["host: welcome", "a: a after 1", "c: c after 1"]


def test_leaving_the_block_reports_a_participant_that_failed_to_observe(server) -> None:
    grumpy = Grumpy("grumpy", to_dist=server.to_dist)
    talker = Talker("t", to_dist=server.to_dist)
    with pytest.raises(ValueError, match="grumpy refuses to listen") as raised:
        with msghub([talker, grumpy]):
            talker()
    assert any("grumpy" in note and "observed" in note for note in raised.value.__notes__)


def test_a_participant_must_be_able_to_observe(server) -> None:
    with pytest.raises(TypeError, match="Mute.*no observe"):
        msghub([Talker("t"), Mute("m", to_dist=server.to_dist)])
    with pytest.raises(TypeError, match="agent or a list of agents"):
        msghub("alice")


class Chair(Talker):
    """Runs a hub of its own, on its server, with itself as a listener."""

    def chair(self, members: list) -> list[str]:
        with msghub([self, *members], announcement=Msg(self.name, "order", role="system")):
            for member in members:
                member()
        return self.heard()


def test_an_agent_runs_a_hub_on_its_server(two_servers) -> None:
    first, second = two_servers
    chair = Chair("chair", to_dist=first.to_dist)
    near = Talker("near", to_dist=first.to_dist)  # hosted in the chair's own server process
    far = Talker("far", to_dist=second.to_dist)
    # Each reply heard once by the chair (the hub hears proxies; the hosted object does not speak twice).
    assert chair.chair([near, far]) == ["chair: order", "near: near after 1", "far: far after 2"]
    assert _heard(far) == ["chair: order", "near: near after 1"]
