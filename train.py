"""Train a classifier: ``python train.py model=lenet data=mnist``, the same as ``cnnlab train``
(options: conf/train.yaml; ``--help`` lists them)."""

import sys

from cnnlab.apps import start

if __name__ == "__main__":
    start("train", sys.argv[1:])
