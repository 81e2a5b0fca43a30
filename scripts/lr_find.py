"""Another name for ``cnnlab lr-find`` (``cnnlab lr-find --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("lr-find")
