"""Activation functions and their derivatives (deck 002): ``python scripts/activations.py [out=PATH] [lang=en|es]``.

Step, sigmoid, tanh, ReLU, leaky ReLU and GELU, with derivatives computed by autograd, and
why the step function cannot be trained by gradient descent. Default: outputs/course/activations.png.
"""

from cnnlab.cli import parse_key_values, script
from cnnlab.config import PROJECT_ROOT
from cnnlab.viz.activations import activations_figure
from cnnlab.viz.figures import save
from cnnlab.viz.labels import check_lang


def main(argv: list[str]) -> int:
    args = parse_key_values(
        argv,
        optional={
            "out": str(PROJECT_ROOT / "outputs" / "course" / "activations.png"),
            "lang": "en",
        },
    )
    figure = activations_figure(lang=check_lang(args["lang"]))
    print(f"Saved {save(figure, args['out'])}")
    return 0


if __name__ == "__main__":
    script(main)
