"""nvc-pipe: a neural video codec (HiNeRV, and more through plugins) that plugs into FFmpeg workflows.

Library entry points live in `nvc_pipe.api` (`encode_file`, `decode_file`, `decode_frames`, `inspect_file`);
the `nvc` command is `nvc_pipe.cli`.
"""

__version__ = "0.1.0"
