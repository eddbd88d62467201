"""Jobs that really run: processing and training (this package), batch transform (transform.py)."""

from . import processing, training, transform  # noqa: F401
