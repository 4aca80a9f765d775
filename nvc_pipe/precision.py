"""Float-math settings, scoped: TF32 while a model trains, exact fp32 while frames are rendered for anyone to see.

PyTorch keeps these as process globals (`torch.backends.cuda.matmul.allow_tf32`, `torch.backends.cudnn.allow_tf32`,
`.deterministic`, `.benchmark`; they only change CUDA kernels). Training turns TF32 on: it is fast and its result
is weights that are quantized anyway. Rendering the frames that `nvc decode` outputs, and that `nvc encode`
measures and reports, runs with TF32 off and deterministic cuDNN, so the encoder's report is what a decoder on
the same kind of device produces, whatever the process did before (docs/reliability.md, "Devices"). Each context
restores the settings it found, on success and on error, so nothing leaks from one phase into the next.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Iterator

import torch

_SETTINGS = {
    "cuda.matmul.allow_tf32": (torch.backends.cuda.matmul, "allow_tf32"),
    "cudnn.allow_tf32": (torch.backends.cudnn, "allow_tf32"),
    "cudnn.deterministic": (torch.backends.cudnn, "deterministic"),
    "cudnn.benchmark": (torch.backends.cudnn, "benchmark"),
}


def current() -> dict[str, bool]:
    """The settings by name, e.g. {"cuda.matmul.allow_tf32": False, ...} (for reports and tests)."""
    return {key: bool(getattr(obj, name)) for key, (obj, name) in _SETTINGS.items()}


@contextmanager
def _scoped(values: dict[str, bool]) -> Iterator[None]:
    saved = current()
    try:
        for key, value in values.items():
            obj, name = _SETTINGS[key]
            setattr(obj, name, value)
        yield
    finally:
        for key, value in saved.items():
            obj, name = _SETTINGS[key]
            setattr(obj, name, value)


def training_math() -> AbstractContextManager[None]:
    """TF32 matmuls and convolutions (cuDNN's algorithm choice left as it was)."""
    return _scoped({"cuda.matmul.allow_tf32": True, "cudnn.allow_tf32": True})


def exact_math() -> AbstractContextManager[None]:
    """IEEE fp32 matmuls and convolutions, deterministic cuDNN algorithms (the decoder's and the encoder's renders)."""
    return _scoped({"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "cudnn.deterministic": True,
                    "cudnn.benchmark": False})
