"""Build hooks of the myhibachi distribution: its sources live in the repository's src/.

In the repository the service's code is ../../src/myhibachi (next to the library, where the
test suite and the type checker see both); in an unpacked sdist it is ./src/myhibachi, where
the sdist build put it. Both hooks look in the repository first and fall back to the sdist,
so `python -m build` (sdist, then a wheel from that sdist), `pip wheel` and `pip install -e`
all build from the same one copy of the code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)


def service_source() -> Path:
    """src/myhibachi in the repository, else in this unpacked sdist."""
    for root in (REPOSITORY, HERE):
        candidate = root / "src" / "myhibachi"
        if (candidate / "__init__.py").is_file():
            return candidate
    raise FileNotFoundError("myhibachi's sources: neither ../../src/myhibachi nor src/myhibachi")


def version_of(package: Path) -> str:
    """`__version__` of a package, read from its source (never imported at build time)."""
    found = VERSION.search((package / "__init__.py").read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f'{package / "__init__.py"}: no line `__version__ = "..."`')
    return found.group(1)


class MetadataHook(MetadataHookInterface):
    """version, readme and dependencies from the sources (only called in the repository:
    building from an sdist, hatchling takes all three from its PKG-INFO)."""

    def update(self, metadata: dict[str, Any]) -> None:
        source = service_source()
        metadata["version"] = version_of(source)
        metadata["readme"] = {
            "content-type": "text/markdown",
            "text": (source / "README.md").read_text(encoding="utf-8"),
        }
        # The library released with this service, with every extra the service uses.
        library = version_of(REPOSITORY / "src" / "freshcache")
        extras = ",".join(self.config["freshcache-extras"])
        metadata["dependencies"] = [
            f"freshcache[{extras}]=={library}",
            *self.config["dependencies"],
        ]


class ServiceSources(BuildHookInterface[BuilderConfig]):
    """Put the repository's src/myhibachi into the wheel as `myhibachi`, into the sdist as
    `src/myhibachi`. In an unpacked sdist there is nothing to do: hatchling's own package
    discovery finds ./src/myhibachi (the project's name), and adding it again would ship
    every file twice."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        source = service_source()
        if source.parent.parent == HERE:
            return
        if self.target_name == "wheel" and version == "editable":
            # Editable: a .pth file puts the repository's src/ on sys.path (dev-mode-dirs).
            return
        target = "myhibachi" if self.target_name == "wheel" else "src/myhibachi"
        build_data["force_include"][str(source)] = target
