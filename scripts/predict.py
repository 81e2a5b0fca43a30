"""Another name for ``cnnlab predict`` (``cnnlab predict --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("predict")
