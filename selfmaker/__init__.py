"""SelfMaker: the Amazon SageMaker API, self-hosted."""


def __getattr__(name: str):
    # The version is looked up when asked for, not at import: every job and endpoint process imports this
    # package inside its sandbox, where scanning the runtime's packages for our metadata costs ~0.07 s each.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("selfmaker")
        except PackageNotFoundError:  # running from a source tree that was not installed
            return "0.0.0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
