# setup.py exists only so setuptools builds the cffi extensions (cffi_modules has no
# pyproject.toml equivalent); everything else lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["relay/uring/_build.py:ffibuilder", "relay/loadtest/_build.py:ffibuilder"])
