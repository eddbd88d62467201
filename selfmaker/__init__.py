"""SelfMaker: the Amazon SageMaker API, self-hosted."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("selfmaker")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
