"""The web console at /console: server-rendered pages over the API's own operations (docs/console.md)."""
