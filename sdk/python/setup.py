"""The optional C speedups of `assay.codegen` (`assay._speedups`); everything else is in
pyproject.toml. Without a C compiler the build skips the extension and the SDK runs in pure
Python, with the same results."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("assay._speedups", ["assay/_speedups.c"], optional=True)])
