"""Runnable versions of the seed's examples.

* ``dist_main.py``: five web agents, first one after the other, then
  distributed; prints the answers and a timing table
  (``python agentnb/examples/dist_main.py --sleep 1``).
* ``dist_server.py``: the independent agent server for ``dist_main.py
  --host localhost --port 12345``.
* ``example_class.py``: a class (not an agent) with sync and async methods.
* ``distributed_simulation.py``: a guessing game; participants on two servers,
  a moderator on a third that creates them and asks them all at once.
* ``distributed_debate.py``: two debaters on two servers and a local judge in
  a message hub, answering with a chat model given by a config file.
"""
