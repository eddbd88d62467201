"""A packaged compiled model, loaded by the one loader of compilation outputs (docs/compilation.md).

:class:`~selfmaker.container.compiled_model.CompiledModel` reads ``compiled.meta`` and loads
``model.onnx`` in ONNX Runtime or ``compiled.so`` through ctypes, so the agent answers exactly as
an endpoint serving the same compilation job does. It imports only the standard library, numpy and
onnxruntime: it is safe on a device. The agent adds only the refusal a deployment reports.
"""

from __future__ import annotations

from pathlib import Path

from ..container.compiled_model import CompiledModel


class LoadError(Exception):
    """Why a package's model could not be loaded (the deployment's StatusReason)."""


def load(directory: Path) -> CompiledModel:
    try:
        return CompiledModel(directory)
    except ImportError as err:
        raise LoadError(f"the model's runtime is not installed on this device ({err.name})") from None
    except Exception as err:  # no or damaged compiled.meta, or the runtime's own refusal of a damaged artifact
        raise LoadError(f"could not load the compiled model: {type(err).__name__}: {str(err)[:300]}") from None
