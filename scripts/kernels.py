"""Another name for ``cnnlab kernels`` (``cnnlab kernels --help`` lists its keys)."""

from cnnlab.commands import alias

if __name__ == "__main__":
    alias("kernels")
