"""``python -m experiments.search``: search fault schedules that break a guarantee; replay them.

Modules: ``space`` (the schedules Hypothesis may draw, and 1-minimality),
``finder`` (the search loop), ``bank`` (one schedule run against the bank
ledger in the simulator), ``properties`` (what a run must not do),
``explain`` (why a run breaks one), ``replay`` (the same schedule over real
TCP and UDP loopback sockets and the simulator), ``cli`` (the command line),
``reference`` (results/search.*).
"""
