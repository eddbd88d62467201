"""Engines: the machinery behind long-running resources.

``reconciler`` drives persisted state machines (docs/design.md, principle 3),
``executor`` runs job instances in sandboxes (principle 5), ``runtimes`` turns
image URIs into local Python environments.
"""
