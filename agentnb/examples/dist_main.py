"""The seed's web-agent example: five agents, sequential then distributed.

Each WebAgent pretends to crawl a page by sleeping ``--sleep`` seconds. The
same ``run`` drives plain agents and distributed ones; only the
initialisation differs (``init_without_dist`` / ``init_with_dist``).

    python agentnb/examples/dist_main.py [--sleep 5] [--init-style method|arg]
    python agentnb/examples/dist_main.py --host localhost --port 12345   # with dist_server.py

Without ``--host``/``--port`` the agents run on a child server of this
process (child mode); with them, on a server started beforehand
(independent mode, see ``dist_server.py``).
"""

from __future__ import annotations

import argparse
import time

import agentnb
from agentnb import AgentBase, Msg

DEFAULT_SLEEP = 5.0


class WebAgent(AgentBase):
    """Simulates crawling a web page and looking for an answer in it."""

    def __init__(self, name: str, sleep: float = DEFAULT_SLEEP) -> None:
        super().__init__(name)
        self.sleep = sleep

    def get_answer(self, url: str, query: str) -> str:
        """Simulate crawling the web and looking for answers."""
        time.sleep(self.sleep)
        return f"[{self.name}] Answer from {url}"

    def reply(self, x: Msg | None = None) -> Msg:
        assert x is not None  # run() sends each agent its query
        return Msg(
            name=self.name,
            role="assistant",
            content=self.get_answer(x.content["url"], x.content["query"]),
        )


QUERY = "example query"
URLS = ["page_1", "page_2", "page_3", "page_4", "page_5"]


def init_without_dist(sleep: float = DEFAULT_SLEEP) -> list:
    return [WebAgent(f"W{i}", sleep=sleep) for i in range(len(URLS))]


def init_with_dist(sleep: float = DEFAULT_SLEEP, host: str | None = None, port: int | None = None,
                   init_style: str = "method") -> list:
    """Distributed agents: on a child server, or on ``host:port`` when given.

    ``init_style="method"`` builds each agent here and moves it with
    ``.to_dist()``; ``"arg"`` passes ``to_dist=`` to the constructor, so the
    agent is only ever built on the server.
    """
    if init_style == "method":
        if host is None:
            return [WebAgent(f"W{i}", sleep=sleep).to_dist() for i in range(len(URLS))]
        return [WebAgent(f"W{i}", sleep=sleep).to_dist(host=host, port=port) for i in range(len(URLS))]
    # One options value for every agent: to_dist does not modify it.
    to_dist = True if host is None else {"host": host, "port": port}
    # (A type checker reads WebAgent.__init__, not RpcMeta.__call__, which takes to_dist.)
    return [WebAgent(f"W{i}", sleep=sleep, to_dist=to_dist) for i in range(len(URLS))]  # type: ignore[call-arg]


def run(agents: list) -> float:
    start = time.time()
    results = []
    for i, url in enumerate(URLS):
        results.append(agents[i].reply(
            Msg(
                name="system",
                role="system",
                content={
                    "url": url,
                    "query": QUERY,
                },
            )
        ))
    for result in results:
        print(result.content)
    end = time.time()
    return end - start


def print_table(rows: list[tuple[str, float]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"{'phase':<{width}}  seconds")
    for label, seconds in rows:
        print(f"{label:<{width}}  {seconds:7.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sleep", type=float, default=DEFAULT_SLEEP,
                        help=f"seconds each agent 'crawls' (default: {DEFAULT_SLEEP:g})")
    parser.add_argument("--host", default=None, help="an agent server started beforehand (with --port)")
    parser.add_argument("--port", type=int, default=None, help="its port (with --host)")
    parser.add_argument("--init-style", choices=("method", "arg"), default="method",
                        help="'method': Agent(...).to_dist(); 'arg': Agent(..., to_dist=...)")
    args = parser.parse_args(argv)
    if (args.host is None) != (args.port is None):
        parser.error("--host and --port go together")

    agentnb.init()
    start = time.time()
    simple_agents = init_without_dist(args.sleep)
    dist_agents = init_with_dist(args.sleep, args.host, args.port, args.init_style)
    end = time.time()
    initialisation = end - start
    print(f"Time taken for initialization: {initialisation}")
    sequential = run(simple_agents)
    print(f"Time taken without distributed mode: {sequential}")
    distributed = run(dist_agents)
    print(f"Time taken with distributed mode: {distributed}")
    print()
    print_table([("initialisation", initialisation), ("sequential", sequential), ("distributed", distributed)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
