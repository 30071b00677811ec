"""The benchmarks: round trips, throughput and scaling against ceilings, costs of parts.

``throughput`` is the whole benchmark (``python -m experiments.throughput``);
its parts: ``peers`` (the server processes compared), ``workloads`` (what a
client sends), ``load`` (the closed-loop load client), ``measure`` (rounds,
pairs and their summaries), ``inprocess`` (sim ops/s, prime checks),
``fault_layer`` (the zero-probability fault layer's cost), ``long_checks``
(short numbers checks beside long ones), ``targets`` (goals judged),
``report`` (tables and plot), ``labels`` (shared names); ``roundtrip`` is the
one-client quick check. Built on ``experiments.framework``.
"""
