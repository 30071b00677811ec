"""The experiment framework: declare arguments and cells, run them, typed records, tables, files.

Start from ``experiments.retries`` (the template). The pieces:

* ``experiment``: ``Experiment`` (the declaration) and ``run_experiment``;
* ``options``: argparse types, ``config_from`` (the frozen config), ``environment``;
* ``run``: ``run_cells`` (sequential or worker processes) and ``Progress``;
* ``records``: ``Record``, the base of typed records, and its field markers;
* ``tables``: ``Column``, ``table``, ``section``, ``percentile``;
* ``plots``: ``Plot``, ``Panel``, ``Series`` and ``save``;
* ``results``: ``Results`` and ``write_results`` (JSON, CSV, Markdown, PNG).
"""
