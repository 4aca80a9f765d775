"""Encoder stages, one module each; a codec plugin composes them into its pipeline (see nvc_pipe.pipeline)."""
