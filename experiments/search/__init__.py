"""``python -m experiments.search``: search fault schedules that break a guarantee; replay them.

Modules: ``space`` (the schedules Hypothesis may draw, and 1-minimality),
``finder`` (the search loop), ``bank`` (one schedule run against the bank
ledger in the simulator), ``config`` (a search's question and its fault
kinds), ``properties`` (what a run must not do), ``explain`` and ``trace``
(why a run breaks one, and its timeline), ``replay`` (the same schedule over
real TCP and UDP loopback sockets and the simulator), ``tool`` (a search and
a replay as printed), ``cli`` (the command line), ``reference``
(results/search.*).
"""
