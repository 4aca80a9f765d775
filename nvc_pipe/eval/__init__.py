"""Evaluation harness: datasets (UVG, MCL-JCV, Bunny, any directory), FFmpeg anchors (x264, x265, SVT-AV1),
metrics on the same frames for every codec, BD-rate / BD-PSNR, JSON/CSV/markdown reports and RD plots.

Modules: :mod:`.sequences`, :mod:`.datasets`, :mod:`.baselines`, :mod:`.bdrate`, :mod:`.runner`,
:mod:`.measure`, :mod:`.report`, :mod:`.plots`, :mod:`.published`, :mod:`.cli` (``nvc eval``). Importing this
package stays light (no torch, PyAV, SciPy or matplotlib): `nvc` builds its parser from it on every run.
"""
