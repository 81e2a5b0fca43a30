"""Another name for ``cnnlab compare`` (``cnnlab compare --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("compare")
