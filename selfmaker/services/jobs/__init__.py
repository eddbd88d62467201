"""Jobs that really run: processing and training (this package), batch transform (transform.py)."""
