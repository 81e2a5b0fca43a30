"""Development tools, not used by a run: the benchmark (``make bench``) and the README's
generated tables (``scripts/update_readme.py``)."""
