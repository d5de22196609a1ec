"""Data preparation: readers of original dataset formats (:mod:`raysys.data.formats`)
and the Parquet shards they are converted to (:mod:`raysys.data.shards`)."""
