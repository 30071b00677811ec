"""Experiments: sweep transports x semantics x faults, audit, print tables, write results/.

``experiments.framework`` is the one framework they share; ``experiments.retries``
is the template of an experiment; ``experiments.bench`` holds the benchmarks.
"""
