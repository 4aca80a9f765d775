"""Quantization stage: the trained parameters become tensor records (6-bit symmetric per-axis, fp16 biases).

Every parameter with more than one dimension is quantized (`nvc_pipe.quant`); 1-D parameters (biases) are kept
as fp16. A pruned weight's mask travels with it so its zeros cost almost nothing. Records are in the model's
`named_parameters()` order.
"""

from __future__ import annotations

from ..bitstream.tensors import TensorRecord
from ..pipeline import Work
from ..quant import quantize


def records_from_model(model, masks: dict, bits: int) -> list[TensorRecord]:
    records = []
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if p.ndim > 1:
            mask = masks.get(name)
            records.append(TensorRecord(name, shape, quant=quantize(p, bits),
                                        mask=None if mask is None else mask.cpu().numpy().astype(bool)))
        else:
            records.append(TensorRecord(name, shape, fp16=p.detach().float().cpu().half().numpy()))
    return records


def run(work: Work) -> Work:
    work.records = records_from_model(work.model, work.masks, work.config.train.bits)
    return work
