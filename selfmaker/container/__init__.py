"""Code that runs inside job sandboxes (made importable there read-only through PYTHONPATH, never installed).

Modules here import only the standard library at top level, so they work in any
runtime: ``training`` (the SageMaker training toolkit's contract: script mode
and the SM_* environment), and the built-in algorithms and servers.
"""
