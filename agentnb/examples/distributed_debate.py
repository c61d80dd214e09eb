"""The seed's distributed debate: two debaters on two agent servers, a judge here, in one message hub.

Each round the host announces the round to everyone (``hub.broadcast``); the
affirmative side speaks, then the negative side, then the judge. In the hub
each of them hears what the others said before it speaks: the debaters on
their servers, the judge in this process. At the end the judge declares the
winner. Every answer comes from a chat model, given by a model config file (a
JSON list, as for ``agentnb.init(model_configs=...)``):

    python agentnb/examples/distributed_debate.py --model-config-path models.json [--rounds 3]

    models.json: [{"config_name": "debate", "model_type": "openai_chat", "model": "gpt-4o-mini",
                   "api_key_env": "OPENAI_API_KEY"}]

``--model-config-name`` picks a config of the file (default: its first). The
two servers are children of this process (``agentnb.start_pool``) and get the
configs through their environment.
"""

from __future__ import annotations

import argparse
import json

import agentnb
from agentnb import AgentBase, Msg

TOPIC = "whether Artificial General Intelligence can be achieved with the GPT model framework"
RULES = (f"Welcome to the debate on {TOPIC}. In each round the affirmative side argues first, then the "
         "negative side; then the judge sums up the strongest points of both, without declaring a winner "
         "for the round. After the last round the judge declares the overall winner.")
ROUNDS = ["Let us begin the first round. The affirmative side: present your argument.",
          "Let us begin the second round. It is your turn, the affirmative side.",
          "Next is the final round."]
END = "Judge, please declare the overall winner now."

PROMPTS = {
    "Pro": "You are Pro, the affirmative side: argue that AGI can be achieved with GPT models. Be brief.",
    "Con": "You are Con, the negative side: argue that AGI cannot be achieved with GPT models. Be brief.",
    "Judge": "You are Judge, the judge of a debate about AGI and GPT models: summarise fairly, then decide.",
}


class Debater(AgentBase):
    """A dialog agent: it answers from its system prompt and everything it has heard, with its model."""

    def reply(self, x: Msg | None = None) -> Msg:
        assert self.memory is not None and self.model is not None  # made with a memory and a model (main)
        if x is not None:
            self.memory.append(x)
        prompt = [{"role": "system", "content": self.sys_prompt}]
        prompt += [{"role": "assistant" if m.name == self.name else "user", "content": f"{m.name}: {m.content}"}
                   for m in self.memory]
        msg = Msg(self.name, self.model(prompt).text, role="assistant")
        self.memory.append(msg)
        return msg


def debate(pro: AgentBase, con: AgentBase, judge: AgentBase, rounds: int) -> None:
    """The seed's main loop: announce a round, let each speak, and print what they say."""
    with agentnb.msghub([pro, con, judge], announcement=Msg("host", RULES, role="system")) as hub:
        for i in range(rounds):
            hub.broadcast(Msg("host", ROUNDS[min(i, len(ROUNDS) - 1)], role="system"))
            for speaker in (pro, con, judge):
                said = speaker()
                print(f"[{said.name}] {said.content}", flush=True)
        hub.broadcast(Msg("host", END, role="system"))
        verdict = judge()
        print(f"[{verdict.name}] {verdict.content}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-config-path", required=True,
                        help="a JSON file of model configs (see the README's 'Agents with a model')")
    parser.add_argument("--model-config-name", help="the config the agents use (default: the file's first)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds before the verdict (default 3)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        with open(args.model_config_path) as f:
            configs = json.load(f)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read --model-config-path {args.model_config_path}: {exc}")
    agentnb.init(model_configs=configs)  # before the servers start: they receive the configs
    listed = configs if isinstance(configs, list) else [configs]
    name = args.model_config_name or listed[0]["config_name"]

    with agentnb.start_pool(replicas=2) as pool:
        pro_server, con_server = pool.replicas
        pro = Debater("Pro", sys_prompt=PROMPTS["Pro"], model_config_name=name,
                      to_dist={"host": pro_server.host, "port": pro_server.port, "token": pro_server.token})
        con = Debater("Con", sys_prompt=PROMPTS["Con"], model_config_name=name,
                      to_dist={"host": con_server.host, "port": con_server.port, "token": con_server.token})
        judge = Debater("Judge", sys_prompt=PROMPTS["Judge"], model_config_name=name)  # here, in this process
        agentnb.wait_created(pro, con)
        print(f"Pro on {pro_server.display}, Con on {con_server.display}, the Judge in this process", flush=True)
        debate(pro, con, judge, args.rounds)


if __name__ == "__main__":
    main()
