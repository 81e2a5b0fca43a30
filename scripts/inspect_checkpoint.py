"""Another name for ``cnnlab inspect`` (``cnnlab inspect --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("inspect")
