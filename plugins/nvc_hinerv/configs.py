"""HiNeRV architecture configs and presets (arXiv 2306.09818).

`HiNeRVConfig` holds exactly what a decoder needs to rebuild the network; it is stored as JSON in the stream,
so `from_dict` is strict. Training hyper-parameters do not live here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from math import prod


WEIGHT_CODINGS = ("6bit", "rd")


@dataclass(frozen=True)
class HiNeRVConfig:
    """Architecture of one HiNeRV network (see docs in `model.py`)."""

    channels: int = 136
    """C: width of the stem and of stage 0; stage i has C // 2**i channels."""
    scales: tuple[int, ...] = (5, 2, 2, 2)
    """Spatial upsampling factor per stage; their product maps the base map to the coded frame."""
    depths: tuple[int, ...] = (3, 3, 3, 1)
    """ConvNeXt blocks per stage."""
    exps: tuple[float, ...] = (4.0, 4.0, 4.0, 1.0)
    """MLP expansion per stage: hidden = int(C_out * exp)."""
    kernel_size: int = 3
    """Depth-wise conv kernel of the blocks (odd)."""
    stem_kernel_size: int = 3
    """Stem conv kernel (odd)."""
    base_grid_frames: int = 40
    """T_grid: time steps of base-grid level 0 (level i has T_grid // 2**i, at least 1)."""
    base_grid_channels: int = 2
    """c: channels of base-grid level 0 (level i has c * 2**i)."""
    base_grid_levels: int = 2
    """Number of base-grid levels (concatenated on channels)."""
    local_grid_channels: int = 4
    """C0: local-grid channels of stage 0 level 0; stage s uses max(1, floor(C0 * 0.5**s)), doubling per level."""
    local_grid_levels: int = 3
    """Number of local-grid levels per stage (level j has num_frames // 2**j time steps, at least 1)."""
    weight_coding: str = "6bit"
    """How the weights are coded: "6bit" (prune + QAT + 6-bit records, the paper's) or "rd" (learned steps and a
    Laplace entropy model, `rd.py`; payload version 2). Written in the stream only when not "6bit"."""

    def __post_init__(self) -> None:
        n = len(self.scales)
        if n == 0 or len(self.depths) != n or len(self.exps) != n:
            raise ValueError("scales, depths and exps must be non-empty and of equal length")
        for name in ("channels", "base_grid_frames", "base_grid_channels", "base_grid_levels",
                     "local_grid_channels", "local_grid_levels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.channels >> (n - 1) < 1:
            raise ValueError("channels too small for the number of stages")
        if any(s < 1 for s in self.scales) or any(d < 1 for d in self.depths) or any(e <= 0 for e in self.exps):
            raise ValueError("scales, depths and exps must be positive")
        for name in ("kernel_size", "stem_kernel_size"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0 or k > 31:
                raise ValueError(f"{name} must be odd and in 1..31")
        # Sanity caps far above any preset, so a header cannot ask for an absurd network (docs/reliability.md).
        caps = {"channels": 4096, "base_grid_frames": 1 << 16, "base_grid_channels": 1024, "base_grid_levels": 8,
                "local_grid_channels": 1024, "local_grid_levels": 8}
        for name, cap in caps.items():
            if getattr(self, name) > cap:
                raise ValueError(f"{name} must be <= {cap}")
        if self.weight_coding not in WEIGHT_CODINGS:
            raise ValueError(f"weight_coding must be one of {', '.join(WEIGHT_CODINGS)}")
        if n > 8 or self.factor > 1024 or max(self.depths) > 64 or max(self.exps) > 64:
            raise ValueError("scales, depths or exps out of range")

    @property
    def factor(self) -> int:
        """Base-map to frame upsampling factor (product of scales)."""
        return prod(self.scales)

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists; weight_coding only when not the default, as in version-1 streams)."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if d["weight_coding"] == "6bit":
            del d["weight_coding"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HiNeRVConfig":
        """Inverse of `to_dict`; missing keys take defaults. Unknown keys or wrong types -> ValueError."""
        if not isinstance(d, dict):
            raise ValueError("config must be a dict")
        kinds = {f.name: f.type for f in fields(cls)}
        kw = {}
        for key, val in d.items():
            if key not in kinds:
                raise ValueError(f"unknown config key {key!r}")
            kind = kinds[key]
            if kind.startswith("tuple"):
                elem = float if "float" in kind else int
                if not isinstance(val, (list, tuple)) or not all(_ok(v, elem) for v in val):
                    raise ValueError(f"config key {key!r} must be a list of {elem.__name__}")
                kw[key] = tuple(elem(v) for v in val)
            elif kind == "str":
                if not isinstance(val, str):
                    raise ValueError(f"config key {key!r} must be a string")
                kw[key] = val
            else:
                if not _ok(val, int):
                    raise ValueError(f"config key {key!r} must be an int")
                kw[key] = val
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"invalid config: {e}") from None


def _ok(v, elem) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) if elem is int else isinstance(v, (int, float))


def _official(c: int, scales: tuple[int, ...], t_grid: int, base_c: int, c0: int) -> HiNeRVConfig:
    return HiNeRVConfig(channels=c, scales=scales, depths=(3, 3, 3, 1), exps=(4.0, 4.0, 4.0, 1.0),
                        base_grid_frames=t_grid, base_grid_channels=base_c, local_grid_channels=c0)


_BUNNY = (5, 2, 2, 2)  # x40: 18x32 base map for 1280x720
_UVG = (5, 3, 2, 2)    # x60: 18x32 base map for 1920x1080

PRESETS: dict[str, HiNeRVConfig] = {
    # Official HiNeRV configs (hinerv.md §1.7); params at 1280x720x132 (Bunny) / 1920x1080x600 (UVG).
    "bunny-xxs": _official(136, _BUNNY, 40, 2, 4),   # 766,691 params
    "bunny-xs": _official(196, _BUNNY, 40, 4, 8),    # 1,585,666 params
    "bunny-s": _official(280, _BUNNY, 40, 8, 16),    # 3,249,819 params
    "uvg-s": _official(280, _UVG, 150, 2, 4),        # 3,188,933 params
    "uvg-m": _official(400, _UVG, 150, 4, 8),        # 6,489,553 params
    "uvg-l": _official(560, _UVG, 150, 8, 16),       # 12,818,953 params
    # CPU preset (default): 256x144, ~48 frames on 2 cores; x16 (9x16 base map), widths 48/24/12,
    # 67,191 params at 256x144x48, 0.22 GMAC/frame, ~20-25 ms/frame forward on 2 CPU threads.
    "fast": HiNeRVConfig(channels=48, scales=(4, 2, 2), depths=(2, 2, 1), exps=(4.0, 4.0, 1.0),
                         base_grid_frames=12, base_grid_channels=2, local_grid_channels=2),
    # CPU size ladder around `fast` for RD curves on small crops (same depths/scales, widths 32 and 64).
    "fast-s": HiNeRVConfig(channels=32, scales=(4, 2, 2), depths=(2, 2, 1), exps=(4.0, 4.0, 1.0),
                           base_grid_frames=12, base_grid_channels=2, local_grid_channels=2),
    "fast-l": HiNeRVConfig(channels=64, scales=(4, 2, 2), depths=(2, 2, 1), exps=(4.0, 4.0, 1.0),
                           base_grid_frames=12, base_grid_channels=4, local_grid_channels=4),
    # Test preset: x4, widths 16/8; 2,587 params at 32x32x4, a few ms per training step.
    "tiny": HiNeRVConfig(channels=16, scales=(2, 2), depths=(1, 1), exps=(2.0, 1.0),
                         base_grid_frames=2, base_grid_channels=1, local_grid_channels=1),
}
DEFAULT_PRESET = "fast"
