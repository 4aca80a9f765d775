"""Video I/O around FFmpeg (PyAV): frames in (demux), NVC stream in Matroska (mux), frames out (sink)."""
