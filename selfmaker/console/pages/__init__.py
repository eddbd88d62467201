"""The console's pages, one module per area; each declares its ``ROUTES`` (collected in console/app.py)."""
