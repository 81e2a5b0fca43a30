"""The words on the course's figures in its two languages: ``lang=en`` (default) or ``lang=es``.

One table per language, the same keys in both (a test holds them to that), with the terms of
the course's decks: convolución, kernel (filtro), relleno, paso, agrupación, exactitud...
"""

from __future__ import annotations

from cnnlab.errors import ConfigError

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "input": "input {h}x{w}",
        "kernel": "kernel",
        "convolution": "convolution",
        "relu": "ReLU",
        "max_pool": "max pool {k}x{k}",
        "avg_pool": "avg pool {k}x{k}",
        "min_pool": "min pool {k}x{k}",
        "pool_input": "input",
        "kernels_title": (
            "3x3 kernels as a conv layer computes them, stride {stride}, padding {padding}: "
            "{formula}\nCross-correlation, no flip: [1, 0, -1] is positive on a bright-to-dark "
            "edge (left to right), [-1, 0, 1] on a dark-to-bright one; ReLU keeps only the "
            "positive side."
        ),
        "pooling_title": "Pooling {k}x{k}: the same map through max, average and min pooling",
        "too_small": "cells too small for values",
        "derivative": "d/dx {name}",
        "x": "x",
        "f": "f(x)",
        "df": "f'(x)",
        "no_gradient": "0 everywhere:\nno gradient to learn from",
        "activations_title": (
            "Activations (top) and their derivatives (bottom). Gradient descent moves weights "
            "along the derivative: the step function's is 0 (undefined at 0), so a network of "
            "steps cannot be trained by backpropagation; sigmoid and tanh saturate (derivative "
            "near 0 for large |x|); ReLU passes gradient 1 for x > 0."
        ),
        "predicted": "predicted",
        "true": "true (class accuracy)",
        "confusion_title": "{title}: accuracy {acc:.2%} of {n}",
        "test": "Test",
        "per_class_title": "Test accuracy per class",
        "accuracy": "accuracy",
        "class": "class",
        "top_title": "Top {k}: {image}",
        "probability": "probability",
        "input_seen": "input",
        "cam_scale": "map value (1 = its peak)",
    },
    "es": {
        "input": "entrada {h}x{w}",
        "kernel": "kernel (filtro)",
        "convolution": "convolución",
        "relu": "ReLU",
        "max_pool": "agrupación máx. {k}x{k}",
        "avg_pool": "agrupación media {k}x{k}",
        "min_pool": "agrupación mín. {k}x{k}",
        "pool_input": "entrada",
        "kernels_title": (
            "Kernels 3x3 tal como los calcula una capa convolucional, paso (stride) {stride}, "
            "relleno (padding) {padding}: {formula}\nCorrelación cruzada, sin voltear el "
            "kernel: [1, 0, -1] es positivo en un borde de claro a oscuro (de izquierda a "
            "derecha), [-1, 0, 1] en uno de oscuro a claro; ReLU deja solo la parte positiva."
        ),
        "pooling_title": (
            "Agrupación (pooling) {k}x{k}: el mismo mapa por agrupación máxima, media y mínima"
        ),
        "too_small": "celdas pequeñas: sin valores",
        "derivative": "d/dx {name}",
        "x": "x",
        "f": "f(x)",
        "df": "f'(x)",
        "no_gradient": "0 en todas partes:\nsin gradiente",
        "activations_title": (
            "Funciones de activación (arriba) y sus derivadas (abajo). El descenso por gradiente "
            "mueve los pesos según la derivada: la de la función escalón es 0 (no definida en "
            "0), así que una red de escalones no se entrena por retropropagación; la sigmoide y "
            "la tangente hiperbólica se saturan (derivada casi 0 para |x| grande); ReLU deja "
            "pasar un gradiente de 1 para x > 0."
        ),
        "predicted": "clase predicha",
        "true": "clase verdadera (exactitud de la clase)",
        "confusion_title": "{title}: exactitud {acc:.2%} de {n}",
        "test": "Prueba",
        "per_class_title": "Exactitud por clase en la prueba",
        "accuracy": "exactitud",
        "class": "clase",
        "top_title": "Las {k} clases más probables: {image}",
        "probability": "probabilidad",
        "input_seen": "entrada",
        "cam_scale": "valor del mapa (1 = su máximo)",
    },
}
# the demos' kernels and activations by name (cnnlab.viz.kernels, cnnlab.viz.activations)
NAMES: dict[str, dict[str, str]] = {
    "en": {},  # their own names
    "es": {
        "vertical edge (course)": "borde vertical (curso)",
        "horizontal edge (course)": "borde horizontal (curso)",
        "sobel (course)": "Sobel (curso)",
        "laplacian": "laplaciano",
        "vertical edge": "borde vertical",
        "horizontal edge": "borde horizontal",
        "sobel x": "Sobel x",
        "sobel y": "Sobel y",
        "emboss": "relieve",
        "sharpen": "enfoque",
        "box blur": "desenfoque de caja",
        "step": "escalón",
        "sigmoid": "sigmoide",
        "tanh": "tanh",
        "ReLU": "ReLU",
        "leaky ReLU (0.1)": "ReLU con fuga (0.1)",
        "GELU": "GELU",
    },
}
LANGS = tuple(LABELS)


def check_lang(lang: str) -> str:
    if lang not in LABELS:
        raise ConfigError(
            f"lang={lang!r} is not a language of the figures: use lang=en or lang=es."
        )
    return lang


def label(key: str, lang: str = "en", **values) -> str:
    """The figure text ``key`` in ``lang``, its ``{placeholders}`` filled from ``values``."""
    return LABELS[check_lang(lang)][key].format(**values)


def term(text: str, lang: str = "en") -> str:
    """A kernel's or an activation's name in ``lang`` (a name it has no word for stays as is)."""
    return NAMES[check_lang(lang)].get(text, text)
