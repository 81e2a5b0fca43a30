"""Another name for ``cnnlab search`` (``cnnlab search --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("search")
