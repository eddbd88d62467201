"""Image URIs -> local runtimes: Python environments with the image's framework, built on first use.

The SageMaker SDK names framework images (``image_uris.retrieve``) like
``683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3``.
:func:`resolve` maps the repository and tag to the packages of that framework
at the tagged version (any account, region or ECR domain); users map other
images in a YAML/JSON file (setting ``runtimes_config``)::

    images:
      "my-registry.example.com/team/*":        # fnmatch pattern over the full URI
        packages: ["scikit-learn==1.5.*", "lightgbm"]
      "my-registry.example.com/tools:latest":
        python: /usr/bin/python3               # an existing interpreter, used as is
        command: ["python3", "-m", "tools"]    # the image's default entrypoint

:func:`ensure` builds a runtime once (uv, or ``python -m venv`` + pip; its output
going to the job's log) under the runtimes directory, guarded by a file lock
so concurrent jobs and servers sharing the directory build it once
(engines/runtime_builds.py: the installers, the package index, the cache).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import runtime_builds

# Every SageMaker framework image carries boto3 (the training toolkit depends on it).
COMMON = ("boto3",)
PY = f"py{sys.version_info.major}{sys.version_info.minor}"

_IMAGE = re.compile(r"^(?P<registry>[^/]+)/(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@.+)?$")


class UnknownImage(Exception):
    """No runtime for this image; the message says how to map one."""


class RuntimeBuildError(Exception):
    pass


@dataclass(frozen=True)
class Runtime:
    key: str  # its directory name under the runtimes directory
    packages: tuple[str, ...] = ()
    python: str | None = None  # an existing interpreter to use as is (no environment is built)
    command: tuple[str, ...] = ()  # the image's default entrypoint, if it has one
    algorithm: str | None = None  # in-sandbox module that trains when no script is given (built-in algorithms)
    description: str = ""
    label: str = ""  # how people name it (sagemaker-xgboost-1.7-1); the key adds the Python and a digest

    @property
    def name(self) -> str:
        return self.label or self.key

    def bin_dir(self, runtimes_dir: Path) -> Path:
        return Path(self.python).parent if self.python else runtimes_dir / self.key / "bin"

    def root(self, runtimes_dir: Path) -> Path:
        """The environment's own prefix: the built venv, or the configured interpreter's prefix."""
        return Path(os.path.abspath(self.python)).parents[1] if self.python else runtimes_dir / self.key

    def roots(self, runtimes_dir: Path) -> tuple[Path, ...]:
        """Every directory the sandbox must see (read-only) for this runtime to work: its own prefix and
        the prefix of the interpreter it is built on. Raises RuntimeBuildError if one would expose too much."""
        return prefixes(str(self.root(runtimes_dir)), self.python)


@dataclass
class _Framework:
    packages: Callable[[re.Match], list[str]]
    tag: str  # regex over the tag
    algorithm: str | None = None
    label: str = ""


def _minor(version: str) -> str:
    """'1.2-1' (SageMaker's <framework version>-<container release>) -> '1.2.*'."""
    return version.split("-")[0] + ".*"


FRAMEWORKS: dict[str, _Framework] = {
    "sagemaker-scikit-learn": _Framework(
        lambda m: [f"scikit-learn=={_minor(m['v'])}", "numpy<2", "scipy", "pandas<2.2"],
        r"(?P<v>\d+\.\d+(?:\.\d+)?(?:-\d+)?)(?:-.*)?",
        label="scikit-learn",
    ),
    "sagemaker-xgboost": _Framework(
        lambda m: [f"xgboost=={_minor(m['v'])}", "numpy<2", "scipy", "pandas<2.2", "scikit-learn<1.6"],
        r"(?P<v>\d+\.\d+(?:\.\d+)?(?:-\d+)?)(?:-.*)?",
        algorithm="selfmaker.container.xgboost_algorithm",
        label="XGBoost",
    ),
    "pytorch-training": _Framework(
        lambda m: [f"torch=={m['v']}", "numpy"], r"(?P<v>\d+\.\d+\.\d+)(?:-.*)?", label="PyTorch"
    ),
    "pytorch-inference": _Framework(
        lambda m: [f"torch=={m['v']}", "numpy"], r"(?P<v>\d+\.\d+\.\d+)(?:-.*)?", label="PyTorch"
    ),
    "tensorflow-training": _Framework(
        lambda m: [f"tensorflow=={_minor(m['v'])}"], r"(?P<v>\d+\.\d+(?:\.\d+)?)(?:-.*)?", label="TensorFlow"
    ),
    "tensorflow-inference": _Framework(
        lambda m: [f"tensorflow=={_minor(m['v'])}"], r"(?P<v>\d+\.\d+(?:\.\d+)?)(?:-.*)?", label="TensorFlow"
    ),
    "huggingface-pytorch-training": _Framework(
        lambda m: [f"torch=={m['v']}", f"transformers=={m['t']}", "datasets", "accelerate"],
        r"(?P<v>\d+\.\d+\.\d+)-transformers(?P<t>\d+\.\d+\.\d+)(?:-.*)?",
        label="Hugging Face",
    ),
    "huggingface-pytorch-inference": _Framework(
        lambda m: [f"torch=={m['v']}", f"transformers=={m['t']}"],
        r"(?P<v>\d+\.\d+\.\d+)-transformers(?P<t>\d+\.\d+\.\d+)(?:-.*)?",
        label="Hugging Face",
    ),
}


# The compilation toolchain (docs/compilation.md): one runtime both compiles (tag ``<v>-compile-<framework>``) and
# serves compiled models (the InferenceImage, tag ``<v>-inference-cpu-py3``), so it is built once. xgboost < 3.1
# still reads the legacy binary models SageMaker's XGBoost 1.x wrote; tl2cgen 1.0 embeds Treelite 4.1.
NEO_PACKAGES = [
    "numpy",
    "scipy",
    "scikit-learn",
    "joblib",
    "xgboost-cpu>=2.1,<3.1",
    "treelite>=4.1,<5",
    "tl2cgen==1.0.*",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "onnxmltools",
]
NEO_REPOSITORY = "selfmaker-neo"
FRAMEWORKS[NEO_REPOSITORY] = _Framework(
    lambda m: list(NEO_PACKAGES), r"(?P<v>1\.0)-(?:compile-[a-z]+|inference-cpu-py3)", label="compilation toolchain"
)


def _key(name: str, packages: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(sorted(packages)).encode()).hexdigest()[:10]
    return f"{re.sub(r'[^a-zA-Z0-9.]+', '-', name).strip('-')}-{PY}-{digest}"


def load_config(path: Path | None) -> dict:
    """The user's image mappings (``images:`` pattern -> runtime), from YAML or JSON."""
    if not path:
        return {}
    text = Path(path).read_text()
    if str(path).endswith(".json"):
        config = json.loads(text)
    else:
        import yaml

        config = yaml.safe_load(text) or {}
    return config.get("images", {})


def resolve(image_uri: str, config: dict | None = None) -> Runtime:
    """The runtime of an image, or :class:`UnknownImage` saying why there is none."""
    for pattern, entry in (config or {}).items():
        if image_uri == pattern or fnmatch.fnmatchcase(image_uri, pattern):
            packages = [*entry.get("packages", []), *COMMON] if not entry.get("python") else []
            return Runtime(
                key=_key(f"custom-{pattern}", packages),
                packages=tuple(packages),
                python=entry.get("python"),
                command=tuple(entry.get("command", ())),
                algorithm=entry.get("algorithm"),
                description=f"configured runtime for {pattern}",
                label=pattern,
            )
    match = _IMAGE.match(image_uri or "")
    framework = FRAMEWORKS.get(match["repo"].rsplit("/", 1)[-1]) if match else None
    if match is None or framework is None:
        raise UnknownImage(
            f"SelfMaker has no runtime for the image {image_uri!r}: it runs the SageMaker framework images "
            f"({', '.join(sorted(FRAMEWORKS))}) as local Python environments; map other images to a runtime in "
            "the file named by --runtimes-config (see docs/jobs.md)"
        )
    tag = match["tag"] or ""
    tag_match = re.fullmatch(framework.tag, tag)
    if not tag_match:
        raise UnknownImage(
            f"SelfMaker cannot tell the {framework.label} version from the image tag {tag!r} of {image_uri!r}"
        )
    packages = [*framework.packages(tag_match), *COMMON]
    repo = match["repo"].rsplit("/", 1)[-1]
    return Runtime(
        key=_key(f"{repo}-{tag_match['v']}", packages),
        packages=tuple(packages),
        algorithm=framework.algorithm,
        description=f"{framework.label} {tag_match['v']}",
        label=f"{repo}-{tag_match['v']}",
    )


def ensure(
    runtime: Runtime,
    runtimes_dir: Path,
    log: Callable[[str], None],
    *,
    installer: str = "auto",
    package_index: str | None = None,
    building: Callable[[str], None] | None = None,
    cancellation: runtime_builds.Cancellation | None = None,
) -> Path:
    """Build the runtime if it is not built yet; return its bin directory. ``log`` gets the build's progress
    (the job's log); ``building(message)`` is called once before this call builds or waits for another's build
    (a training job's SecondaryStatus). Raises RuntimeBuildError, also for an interpreter the sandbox could
    not show without showing far more (see :func:`prefixes`); ``cancellation`` can end the build (a
    RuntimeBuildError then too)."""
    bin_dir = _build(
        runtime, runtimes_dir, log, installer, package_index, building or (lambda message: None), cancellation
    )
    runtime.roots(runtimes_dir)
    return bin_dir


def options(settings) -> dict:
    """ensure()'s build options from the server's settings (--runtime-installer, --package-index)."""
    return {"installer": settings.runtime_installer, "package_index": settings.package_index}


def is_built(runtime: Runtime, runtimes_dir: Path) -> bool:
    return bool(runtime.python) or (runtimes_dir / runtime.key / runtime_builds.READY).exists()


def _build(
    runtime: Runtime,
    runtimes_dir: Path,
    log: Callable[[str], None],
    preference: str,
    package_index: str | None,
    building: Callable[[str], None],
    cancellation: runtime_builds.Cancellation | None = None,
) -> Path:
    if runtime.python:
        if not Path(runtime.python).exists():
            raise RuntimeBuildError(f"the configured interpreter {runtime.python} does not exist")
        return runtime.bin_dir(runtimes_dir)
    root = runtimes_dir / runtime.key
    if runtime_builds.use_if_built(runtimes_dir, runtime.key):
        return root / "bin"

    def waiting() -> None:  # another job (or server, or `selfmaker runtimes build`) builds it: wait for that build
        building(f"Waiting for runtime {runtime.name} (another job is building it)")
        log(f"SelfMaker: waiting for the runtime {runtime.key}, which another job is building")

    with runtime_builds.locked(runtimes_dir, runtime.key, on_wait=waiting):
        if is_built(runtime, runtimes_dir):
            runtime_builds.touch_used(root)
            return root / "bin"
        try:
            tool = runtime_builds.installer(preference)
        except ValueError as err:
            raise RuntimeBuildError(str(err)) from None
        building(f"Building runtime {runtime.name}")
        source = f" from {package_index}" if package_index else ""
        log(
            f"SelfMaker: building the runtime {runtime.key} ({runtime.description}) with {tool}{source}: "
            f"{' '.join(runtime.packages)}"
        )
        try:
            seconds = runtime_builds.build(
                root,
                runtime.packages,
                log,
                tool=tool,
                package_index=package_index,
                name=runtime.name,
                cancellation=cancellation,
            )
        except runtime_builds.BuildFailed as err:
            raise RuntimeBuildError(str(err)) from None
        log(f"SelfMaker: runtime {runtime.key} is ready (built in {seconds:.1f} s with {tool})")
    return root / "bin"


@functools.cache
def prefixes(root: str, python: str | None = None) -> tuple[Path, ...]:
    """``root`` plus the installation(s) its interpreter runs from: a venv's base Python (pyvenv.cfg
    ``home``, e.g. /root/.pyenv/versions/3.11.7) and where a symlinked interpreter really lives. Just those
    prefixes, never a parent: /root/.pyenv/versions/3.11.7 does not show the rest of /root. Cached: a
    built runtime never changes, and this runs at every instance start."""
    found = [Path(root)]
    try:
        for line in (Path(root) / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                found.append(Path(value.strip()).resolve().parent)
    except OSError:
        pass  # not a venv: an installation of its own
    interpreter = Path(python or Path(root, "bin", "python"))
    if interpreter.exists():
        found.append(interpreter.resolve().parents[1])
    unique = tuple(dict.fromkeys(found))
    for prefix in unique:
        if _too_broad(prefix):
            raise RuntimeBuildError(
                f"the runtime's Python lives in {prefix} (found from {root}): the sandbox would "
                "have to show that whole directory; install that Python under its own prefix "
                "(e.g. /opt/python3.11 or ~/.pyenv/versions/3.11)"
            )
    return unique


def _too_broad(prefix: Path) -> bool:
    """A prefix that is the root, a top-level directory other than /usr, or a home directory."""
    parts = prefix.parts
    if prefix == Path("/usr"):
        return False
    return len(parts) <= 2 or (parts[1] == "home" and len(parts) == 3) or prefix == Path(os.path.expanduser("~"))


# Notebook instances (docs/notebooks.md): one runtime for every instance, JupyterLab on jupyter_server with the
# Python kernel, boto3 and the SageMaker Python SDK v2 (what notebooks written for SageMaker import; it doubles
# the build, about 40 s more, once per runtimes directory: docs/notebooks.md has the measurement).
NOTEBOOK_PACKAGES = ("jupyterlab>=4,<5", "jupyter_server>=2.4,<3", "ipykernel", "sagemaker>=2.200,<3", *COMMON)


def notebook() -> Runtime:
    """The JupyterLab runtime notebook instances run in (this server's Python version)."""
    return Runtime(
        key=_key("notebook", list(NOTEBOOK_PACKAGES)),
        packages=NOTEBOOK_PACKAGES,
        description="JupyterLab for notebook instances",
        label="notebook",
    )
