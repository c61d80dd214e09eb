"""Agents: AgentBase, the base class of every agent."""

from agentnb.agents.agent import AgentBase

__all__ = ["AgentBase"]
