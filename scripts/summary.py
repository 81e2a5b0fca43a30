"""Another name for ``cnnlab summary`` (``cnnlab summary --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("summary")
