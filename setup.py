"""Dataflow workers install cloudfill through this file (``--setup_file ./setup.py``).

All metadata lives in pyproject.toml; this shim lets Beam's stager build an
sdist of the package (with the default model and configs inside) and install
it on each worker.
"""

import setuptools

setuptools.setup()
