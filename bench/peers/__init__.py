"""The peers of ``bench/compare.py``: one module per Python job queue."""
