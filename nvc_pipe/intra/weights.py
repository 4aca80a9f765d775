"""Shipped weights of learned intra codecs: one `.npz` per model, loaded with `allow_pickle=False`.

    config            0-d unicode array: JSON object (architecture + training facts)
    param.<name>      float16 array per state-dict tensor (parameters and buffers)
    tables.<field>    int32/float16 arrays of `EntropyTables` (see factorized.py), exported once at save time

`save_model` writes atomically; `load_model_arrays` rejects anything that is not plain numeric/str arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..media.atomic import atomic_output


def save_model(path: str | Path, model: torch.nn.Module, config: dict, extra: dict[str, np.ndarray]) -> None:
    """Write `model`'s state dict as fp16, its JSON `config` and `extra` arrays (e.g. entropy tables)."""
    arrays = {"config": np.array(json.dumps(config, sort_keys=True))}
    for name, t in model.state_dict().items():
        arrays["param." + name] = t.detach().cpu().to(torch.float16).numpy()
    arrays.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(str(path)) as tmp:
        np.savez(tmp, **arrays)


def load_model_arrays(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """(config, fp32 state dict, other arrays) from a weights file; ConfigError if missing or malformed."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        config = json.loads(str(arrays.pop("config")))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load weights {path}: {type(exc).__name__}") from None
    state = {k[6:]: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items() if k.startswith("param.")}
    rest = {k: v for k, v in arrays.items() if not k.startswith("param.")}
    return config, state, rest
