"""Another name for ``cnnlab augment`` (``cnnlab augment --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("augment")
