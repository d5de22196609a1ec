"""Published numbers the reports draw beside ours, aggregated from the originals' own result files (README.md)."""
