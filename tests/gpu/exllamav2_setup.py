"""setup.py for a binary exllamav2 wheel: the package plus its compiled exllamav2_ext.

exllamav2 0.3.2 is on PyPI only as a pure-Python wheel that compiles its extension
just-in-time on first import; its prebuilt binary wheels stop at torch 2.9 / CUDA 12.8.
build_exllamav2.sh unpacks that wheel, drops this file beside the package as setup.py
and builds one wheel, ``exllamav2-0.3.2+cuXYZ.torchA.B.C``, against the torch found
here, for TORCH_CUDA_ARCH_LIST only. The source list and flags are those of
exllamav2/ext.py's JIT build, read from it so that they cannot drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "exllamav2"
EXT = PACKAGE / "exllamav2_ext"


def jit_sources() -> list[str]:
    """The ``sources_`` list assigned in exllamav2/ext.py."""
    tree = ast.parse((PACKAGE / "ext.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "sources_" for t in node.targets
        ):
            return [str(EXT.relative_to(HERE) / s) for s in ast.literal_eval(node.value)]
    raise SystemExit("exllamav2/ext.py no longer names its sources in sources_")


def requirements() -> list[str]:
    """The unpacked wheel's own Requires-Dist, so the binary wheel asks for the same."""
    found = []
    for metadata in HERE.glob("exllamav2-*.dist-info/METADATA"):
        for line in metadata.read_text().splitlines():
            if line.startswith("Requires-Dist:"):
                found.append(line.split(":", 1)[1].strip())
    return found


def version() -> str:
    scope: dict[str, str] = {}
    exec((PACKAGE / "version.py").read_text(), scope)
    cuda = (torch.version.cuda or "cpu").replace(".", "")
    return f"{scope['__version__']}+cu{cuda}.torch{torch.__version__.split('+')[0]}"


setup(
    name="exllamav2",
    version=version(),
    packages=find_packages(include=["exllamav2", "exllamav2.*"]),
    include_package_data=True,
    package_data={"exllamav2": ["**/*"]},
    ext_modules=[
        CUDAExtension(
            "exllamav2_ext",
            jit_sources(),
            include_dirs=[str(EXT)],
            extra_compile_args={"cxx": ["-Ofast"], "nvcc": ["-lineinfo", "-O3"]},
        )
    ],
    cmdclass={"build_ext": BuildExtension},
    install_requires=requirements(),
    python_requires=">=3.10",
)
