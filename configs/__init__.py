"""YAML run profiles (``cloudfill run --config NAME``)."""
