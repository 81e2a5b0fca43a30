"""Another name for ``cnnlab demo`` (``cnnlab demo --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("demo")
