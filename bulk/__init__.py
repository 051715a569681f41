"""Bulk scoring on Ray Data: ``python -m bulk --input PATH --output PATH`` (README, "Bulk scoring on Ray").

``bulk.scoring`` applies the service's scoring core to a block of rows, ``bulk.sources`` reads the input formats,
``bulk.output`` writes Parquet and the bad rows, ``bulk.pipeline`` runs them on Ray, ``bulk.benchmark`` measures
it. Ray is imported only by ``bulk.pipeline`` (and the benchmark): ``pip install -r requirements-bulk.txt``.
"""
