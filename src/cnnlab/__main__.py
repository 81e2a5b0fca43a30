"""``python -m cnnlab <command> ...``: the same as the ``cnnlab`` command."""

from cnnlab.commands import main

main()
