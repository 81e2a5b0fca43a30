"""Another name for ``cnnlab prepare-data`` (``cnnlab prepare-data --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("prepare-data")
