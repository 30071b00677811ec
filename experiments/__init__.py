"""Experiment scripts: build cells, run them, audit, aggregate, print tables."""
