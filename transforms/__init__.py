"""The pipeline's stages, one per module: match, decode, window, infer,
composite, write, metrics."""
