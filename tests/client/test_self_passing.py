"""An agent that hands itself (``self``) to another agent hands over a proxy, not a copy."""

from __future__ import annotations

import pytest
from agents_for_tests import Hub, Member

from agentnb import RpcObject


@pytest.mark.parametrize("where", ["same server", "other server"])
def test_an_agent_passing_self_passes_a_proxy(start_server, where) -> None:
    first = start_server()
    second = first if where == "same server" else start_server()
    member = Member("m0", to_dist=first.to_dist)
    hub = Hub(to_dist=second.to_dist)
    assert member.join(hub) == 1
    assert hub.member_types() == ["RpcObject"]
    assert hub.broadcast("hello") == [1]
    assert member.heard_all() == ["hello"]  # the hub called the agent itself, not a copy of it


def test_a_method_returning_self_returns_a_proxy_to_the_same_agent(server) -> None:
    member = Member("m1", to_dist=server.to_dist)
    again = member.myself()
    assert isinstance(again, RpcObject) and again.agent_id == member.agent_id
    again.hear("via the returned proxy")
    assert member.heard_all() == ["via the returned proxy"]
    del again  # a returned proxy does not own the agent: dropping it deletes nothing
    assert member.hear("still here") == 2


def test_objects_an_agent_merely_holds_still_travel_as_copies(server) -> None:
    member = Member("m2", to_dist=server.to_dist)
    stranger = member.stranger()
    assert isinstance(stranger, Member) and not isinstance(stranger, RpcObject)
    assert stranger.name == "stranger" and stranger.heard == []
