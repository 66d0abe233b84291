"""Run by `python3 dev.py test` inside a fresh venv where only the freshcache wheel was installed.

Fails (exit 1, one line per problem) unless the wheel installed the `freshcache` package and
nothing of the service: no `myhibachi` module, no `myhibachi` command, no file outside the
package, its .dist-info and the `freshcache` script. Prints what the wheel installed. With the
path of the myhibachi wheel as argument, also checks that one holds `myhibachi` only.
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath


def library_problems() -> list[str]:
    dist = metadata.distribution("freshcache")
    files = [PurePosixPath(str(f)) for f in dist.files or ()]
    print(f"freshcache {dist.version}: {len(files)} files installed")
    for f in files:
        print(f"  {f}")
    problems = []
    info = f"freshcache-{dist.version}.dist-info"
    scripts = Path(sysconfig.get_path("scripts"))
    for f in files:
        top = f.parts[0]
        is_command = f.parent.name == scripts.name and f.name.startswith("freshcache")
        if top not in ("freshcache", info) and not is_command:
            problems.append(f"the wheel installs {f}, outside the freshcache package")
    if PurePosixPath("freshcache/py.typed") not in files:
        problems.append("no freshcache/py.typed")
    if not any(f.parts[0] == info and f.name == "LICENSE" for f in files):
        problems.append("no LICENSE in the .dist-info")
    service = importlib.util.find_spec("myhibachi")
    if service is not None:
        where = service.origin or list(service.submodule_search_locations or ())
        problems.append(f"`import myhibachi` works after installing freshcache alone: {where}")
    if any(scripts.glob("myhibachi*")):
        problems.append(f"a myhibachi command in {scripts}")
    if not any(scripts.glob("freshcache*")):
        problems.append(f"no freshcache command in {scripts}")
    import freshcache

    if freshcache.__version__ != dist.version:
        problems.append(f"freshcache.__version__ {freshcache.__version__} != {dist.version}")
    others = sorted(d.metadata["Name"] for d in metadata.distributions())
    print("distributions in the venv:", ", ".join(others))
    return problems


def service_problems(wheel: Path) -> list[str]:
    names = zipfile.ZipFile(wheel).namelist()
    print(f"{wheel.name}: {len(names)} files")
    problems = [
        f"{wheel.name} holds {n}, outside the myhibachi package"
        for n in names
        if n.split("/")[0] != "myhibachi" and ".dist-info/" not in n
    ]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append(f"{wheel.name}: no LICENSE")
    entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode() if entry_points else ""
    if "myhibachi = myhibachi.cli:main" not in scripts:
        problems.append(f"{wheel.name}: no `myhibachi` command")
    return problems


def main(argv: list[str]) -> int:
    problems = library_problems()
    for wheel in argv:
        problems += service_problems(Path(wheel))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
