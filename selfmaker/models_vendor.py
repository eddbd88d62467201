"""Copy the botocore service models SelfMaker serves into the package (``selfmaker models --update``).

The models are SelfMaker's schema: what it validates, what it answers, what docs/coverage.md
counts. They are vendored from ONE exact botocore release into
``selfmaker/server/service_models/<service>/<api-version>/service-2.json.gz`` (with a
MANIFEST.json naming that release), so the schema never moves under a user whatever
botocore their SDK installed. Updating is this command, then ``selfmaker coverage``.

The release is read from the installed botocore when it is that version, otherwise from
its wheel fetched with ``pip download`` (only this command ever needs it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .server.models import LEGACY_MODELS, MANIFEST, MODELS_DIR, SERVED_SERVICES

# The release the vendored models come from; bump it and run `selfmaker models --update`.
BOTOCORE_VERSION = "1.44.18"


def _botocore_data(version: str, workdir: Path) -> Path:
    """botocore's ``data`` directory of release ``version``: installed, or unpacked from its wheel."""
    try:
        import botocore

        if botocore.__version__ == version:
            return Path(botocore.__file__).parent / "data"
    except ImportError:
        pass
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--dest",
            str(workdir),
            f"botocore=={version}",
        ],
        check=True,
    )
    wheel = next(workdir.glob(f"botocore-{version}-*.whl"))
    target = workdir / version
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target, [n for n in archive.namelist() if n.startswith("botocore/data/")])
    return target / "botocore" / "data"


def _load(data: Path, service: str) -> tuple[str, dict]:
    """(api version, model) as botocore itself loads it: the newest API version, sdk-extras merged in."""
    from botocore.loaders import Loader

    loader = Loader(extra_search_paths=[str(data)], include_default_search_paths=False)
    api_version = loader.determine_latest_version(service, "service-2")
    return api_version, loader.load_service_model(service, "service-2", api_version)


def _write(path: Path, model: dict) -> None:
    """Deterministic bytes (no gzip timestamp): re-vendoring the same release changes no file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps(model, separators=(",", ":")).encode(), mtime=0))


def update(version: str = BOTOCORE_VERSION, target: Path = MODELS_DIR) -> dict:
    """Vendor every served model from botocore ``version`` (and each legacy wire model from its own
    release); return the manifest written."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = _botocore_data(version, workdir)
        services = {}
        for service in SERVED_SERVICES:
            api_version, model = _load(data, service)
            for stale in (target / service).glob("*/service-2.json.gz"):
                stale.unlink()
            _write(target / service / api_version / "service-2.json.gz", model)
            services[service] = api_version
        legacy = {}
        for (service, protocol), release in LEGACY_MODELS.items():
            api_version, model = _load(_botocore_data(release, workdir), service)
            _write(target / service / api_version / f"{protocol}.service-2.json.gz", model)
            legacy[f"{service}/{protocol}"] = release
    manifest = {"botocore": version, "services": services, "legacy": legacy}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m selfmaker.models_vendor", description=__doc__.split("\n")[0])
    parser.add_argument("--botocore", default=BOTOCORE_VERSION, help=f"the release (default {BOTOCORE_VERSION})")
    args = parser.parse_args(argv)
    manifest = update(args.botocore)
    print(
        f"vendored {len(manifest['services'])} models from botocore {manifest['botocore']} into {MODELS_DIR}; "
        "now run `selfmaker coverage`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
