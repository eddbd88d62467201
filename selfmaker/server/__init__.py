"""The HTTP face of SelfMaker: one ASGI app that speaks every AWS wire protocol we serve."""
