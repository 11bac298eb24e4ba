"""Options shared by every command that reads samples (``--calibration``, ``--data``).

One definition of the image preprocessing options (see :class:`onnxrecede.data.ImageOptions`),
applied to image folders and CIFAR data; ``.npz`` and ``digits:`` sources are fed as stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from onnxrecede_cli.common import POSITIVE

from onnxrecede.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

DATA_HELP = (
    "a .npz (one array per input name, or 'x'; labels 'y'), an image folder DIR/CLASS/*, "
    "cifar10:DIR, cifar100:DIR[:train] or digits:train|val|test"
)

_IMAGE_OPTIONS = [
    click.option("--image-size", default=None, metavar="H[xW]",
                 help="Images: centre crop to this size (default: the model input's H x W)."),
    click.option("--resize", type=int, default=None, metavar="S",
                 help="Images: scale the shorter side to S pixels before the crop."),
    click.option("--scale", type=POSITIVE, default=1 / 255, show_default="1/255",
                 help="Images: pixel values 0..255 are multiplied by this."),
    click.option("--mean", default=None, metavar="M[,M,M]",
                 help="Images (and digits:): per-channel mean subtracted after --scale (default 0)."),
    click.option("--std", default=None, metavar="S[,S,S]",
                 help="Images (and digits:): per-channel std divided by (default 1)."),
    click.option("--channel-order", type=click.Choice(["rgb", "bgr"]), default="rgb",
                 show_default=True, help="Images: channel order the model expects."),
    click.option("--layout", type=click.Choice(["auto", "nchw", "nhwc"]), default="auto",
                 show_default=True, help="Images: input layout (auto: from the model input)."),
]  # fmt: skip


def image_options(fn: F) -> F:
    """Add the image preprocessing options to a command."""
    for option in reversed(_IMAGE_OPTIONS):
        fn = option(fn)
    return fn


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers, got '{text}'") from None


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) not in (1, 2) or min(dims) <= 0:
        raise InputError(f"--image-size must be H or HxW (positive), got '{text}'")
    return (dims[0], dims[-1])


def pop_image_options(kwargs: dict[str, Any]) -> Any:
    """Remove the image options from a command's keyword arguments; the ImageOptions."""
    from onnxrecede.data.sources import ImageOptions

    size = _size(kwargs.pop("image_size"))
    mean = _floats(kwargs.pop("mean"), "--mean") or (0.0,)
    std = _floats(kwargs.pop("std"), "--std") or (1.0,)
    opts = ImageOptions(
        size=size,
        resize=kwargs.pop("resize"),
        scale=kwargs.pop("scale"),
        mean=mean,
        std=std,
        channel_order=kwargs.pop("channel_order"),
        layout=kwargs.pop("layout"),
    )
    opts.validate()
    return opts
