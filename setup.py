"""Map the repository's fixed top-level folders into the ``cortex`` import namespace.

``common/`` -> ``cortex.common``, ``services/`` -> ``cortex.services``,
``console/`` -> ``cortex.console``. ``cortex`` itself is a namespace package, so
nothing generic lands at the top of site-packages. Everything else about the
distribution lives in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
FOLDERS = {"common": "cortex.common", "services": "cortex.services", "console": "cortex.console"}


def packages_and_dirs():
    packages, package_dir = [], {}
    for folder, namespace in FOLDERS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            name = ".".join([namespace, *relative.parts])
            packages.append(name)
            package_dir[name] = init.parent.relative_to(ROOT).as_posix()
    return packages, package_dir


packages, package_dir = packages_and_dirs()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={name: ["*.txt", "*.tcss", "*.json", "*.jinja"] for name in packages},
)
