"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt``, the same as
``cnnlab eval`` (options: conf/eval.yaml; ``--help`` lists them)."""

import sys

from cnnlab.apps import start

if __name__ == "__main__":
    start("eval", sys.argv[1:])
