"""Another name for ``cnnlab export`` (``cnnlab export --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("export")
