"""pyshm's benchmark harness: ``python bench/run.py`` or ``python -m bench`` (see README.md)."""
