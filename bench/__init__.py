"""The EST server's benchmark: ``python -m bench`` from the repository root
(``--help`` lists every option; bench/README.md says what it prints).

One job per module:

* ``options``: the command line; ``__main__``: runs it;
* ``run``: one run (raw sign rate, warm-up, timed load, figures);
  ``suite``: the issue 7 scenarios, each a run against a fresh server;
* ``target``: what a run benchmarks (address, credentials, config);
* ``state``: the token, CA, client and prefilled store it prepares, with
  the project's own set-up code (``estappliance.ca.setup``, ``Store``);
* ``server``: the ``twistd est`` it starts, or the one already running;
* ``rawsign``: the token's raw sign rate, through ``estappliance.token``;
* ``enrollment``: request bytes and the untimed enrollments
  (``estappliance.client``);
* ``load`` and ``loadgen``: the load processes and the clients they drive;
* ``procfs`` and ``watch``: the server's CPU, memory and connections;
* ``figures``, ``report`` and ``plot``: what a run measured, printed and drawn.
"""
