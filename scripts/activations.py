"""Another name for ``cnnlab activations`` (``cnnlab activations --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("activations")
