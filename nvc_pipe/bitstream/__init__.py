"""The NVC elementary stream format: fields, boxes, headers and tensor records (spec: docs/bitstream.md)."""
