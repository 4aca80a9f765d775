"""Entropy-coding stage: tensor records → the access-unit payload (constriction range coding).

Reports, per segment, the coded size against the empirical entropy of the coded symbols (the ideal an i.i.d.
per-tensor model could reach), so the cost of side information (names, shapes, scales, histograms) is visible.
"""

from __future__ import annotations

from ..bitstream.fields import ByteWriter
from ..bitstream.tensors import write_tensors
from ..pipeline import Work


def run(work: Work) -> Work:
    w = ByteWriter()
    stats = write_tensors(work.records, w)
    work.payload = w.getvalue()
    quantized = [s for s in stats if s["quantized"]]
    work.report["entropy"] = {
        "payload_bits": 8 * len(work.payload),
        "quantized_coded_bits": sum(s["coded_bits"] for s in quantized),
        "quantized_entropy_bits": round(sum(s["entropy_bits"] for s in quantized), 1),
        "fp16_bits": sum(s["coded_bits"] for s in stats if not s["quantized"]),
        "tensors": len(stats),
    }
    return work
