"""The seed's distributed simulation: a guessing game played by many participants at once.

Each participant answers a number between 0 and ``--max-value`` after
``--sleep`` seconds of "thinking". The participants live on two agent servers;
a moderator agent on a third server creates them (from inside its own
``__init__``, on its server, with ``agentnb.create_many``) and, each round,
asks all of them at once (``agentnb.call_many``) and sums their answers. This process only talks to
the moderator.

    python agentnb/examples/distributed_simulation.py [--participants 8] [--rounds 2] [--sleep 0.5]

The three servers are children of this process (``agentnb.start_pool``): they
stop when it ends. A round takes about one ``--sleep``, not one per participant
(up to a server's ``capacity`` of participants think at once). With
``--sleep 0`` it measures agentnb itself: ``--participants 1000000`` runs a
million participants (see W8 of ``python -m agentnb.bench``).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time

import agentnb
from agentnb import AgentBase, Msg


class RandomParticipant(AgentBase):
    """A participant who thinks for ``sleep_time`` seconds, then picks a number at random."""

    def __init__(self, name: str, max_value: int = 100, sleep_time: float = 1.0) -> None:
        super().__init__(name)
        self.max_value = max_value
        self.sleep_time = sleep_time

    def reply(self, x: Msg | None = None) -> Msg:
        if self.sleep_time:
            time.sleep(self.sleep_time)
        msg = Msg(self.name, str(random.randint(0, self.max_value)), pid=os.getpid())
        assert self.memory is not None  # made with a memory (use_memory's default)
        self.memory.append(msg)
        return msg


class Moderator(AgentBase):
    """Creates ``participants`` participants spread over ``servers`` (``to_dist`` dicts); collects their numbers."""

    def __init__(self, name: str, participants: int, servers: list[dict], max_value: int = 100,
                 sleep_time: float = 1.0) -> None:
        super().__init__(name, use_memory=False)
        self.max_value = max_value
        # One batch per server: participant i goes to servers[i % len(servers)].
        batches = [agentnb.create_many(RandomParticipant, [{"name": f"P{i}"}
                                                           for i in range(first, participants, len(servers))],
                                       to_dist=server, max_value=max_value, sleep_time=sleep_time)
                   for first, server in enumerate(servers)]
        self.participants = [batch[i // len(servers)] for i, batch in
                             ((i, batches[i % len(servers)]) for i in range(participants))]
        # The proxies live as long as the moderator: the garbage collector need not walk them again at
        # every full collection (a round of a million calls makes several); 20-35% off a round at 300,000.
        gc.freeze()

    def created(self) -> int:
        """Wait until every participant exists (raising the first creation error); how many there are."""
        agentnb.wait_created(*self.participants)
        return len(self.participants)

    def reply(self, x: Msg | None = None) -> Msg:
        ask = Msg("moderator", f"Now give a number between 0 and {self.max_value}.", role="user")
        # All at once, ``ask`` pickled once: the same as [p(ask) for p in self.participants].
        results = agentnb.call_many(self.participants, "__call__", ask)
        answers = [r.result() for r in results]
        return Msg(self.name, {"sum": sum(int(a.content) for a in answers), "cnt": len(answers),
                               "participant_pids": sorted({a.pid for a in answers}), "moderator_pid": os.getpid()})


def run(participants: int, rounds: int, max_value: int, sleep: float) -> None:
    capacity = max(32, participants)  # every participant of a server thinks at once
    with agentnb.start_pool(replicas=3, capacity=capacity) as pool:
        first, second, third = pool.replicas
        started = time.perf_counter()
        servers = [{"host": server.host, "port": server.port, "token": server.token} for server in (first, second)]
        # (A type checker reads Moderator.__init__, not RpcMeta.__call__, which takes to_dist.)
        moderator = Moderator("moderator", participants, servers, max_value=max_value, sleep_time=sleep,  # type: ignore[call-arg]
                              to_dist={"host": third.host, "port": third.port, "token": third.token})
        moderator.created()
        print(f"initialisation: {participants} participants on {first.display} and {second.display}, "
              f"the moderator on {third.display} ({time.perf_counter() - started:.2f} s)")
        for round_number in range(1, rounds + 1):
            started = time.perf_counter()
            outcome = moderator().content
            elapsed = time.perf_counter() - started
            print(f"round {round_number}: {outcome['cnt']} participants answered from "
                  f"{len(outcome['participant_pids'])} server processes, average "
                  f"{outcome['sum'] / outcome['cnt']:.1f} ({elapsed:.2f} s)")
        print(f"moderator process {outcome['moderator_pid']}, participant processes "
              f"{' '.join(map(str, outcome['participant_pids']))}, this process {os.getpid()}")
        print(f"one participant after another would take {participants * sleep:.2f} s a round")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", "--participant-num", type=int, default=8,
                        help="how many participants (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="how many rounds (default 2)")
    parser.add_argument("--max-value", type=int, default=100, help="the largest number (default 100)")
    parser.add_argument("--sleep", "--sleep-time", type=float, default=0.5,
                        help="seconds each participant thinks (default 0.5)")
    args = parser.parse_args()
    if args.participants < 1 or args.rounds < 1:
        parser.error("--participants and --rounds must be at least 1")
    run(args.participants, args.rounds, args.max_value, args.sleep)


if __name__ == "__main__":
    main()
