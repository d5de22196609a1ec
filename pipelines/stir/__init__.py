"""STIR (Scaled and Translated Image Recognition) generation.

One module per source (``emoji``, ``mnist``, ``trafficsign``, ``aerial``)
registers a generator in :data:`pipelines.stir.sources.STIR_SOURCES`;
:mod:`pipelines.stir.writer` writes what they build as the original npz
file plus Parquet shards; :mod:`pipelines.stir.generate` ties both together
for ``python -m raysys stir generate``. See docs/stir.md.
"""
