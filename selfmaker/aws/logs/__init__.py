"""CloudWatch Logs: :mod:`.log_store` keeps groups, streams and events and is the Python API the
rest of SelfMaker writes and reads logs with (no HTTP); :mod:`.log_operations` serves the wire
operations the SDKs call, on the same table helpers; :mod:`.filter_pattern` is FilterLogEvents'
pattern syntax.
"""
