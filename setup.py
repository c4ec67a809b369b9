"""Build hook: the wheel carries the call page (web/public and its bundle).

Everything else about the package is in pyproject.toml. When a wheel is
built, ``build_py`` bundles the page with ``npm --prefix web run build``
(esbuild, about a second) when web/'s npm packages are installed, and copies
web/public into the built ``signaling/static`` (package data found by
``signaling.page.call_page_dir``); nothing is copied into the source tree.
Without node/npm the prebuilt bundle is used if there is one (an sdist
carries it); with neither the build stops with a message saying what to do.
An editable install builds nothing: the checkout serves its own web/public.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
PAGE = WEB / "public"
#: the bundle the page loads; the other entry point is its SFrame worker
BUNDLE = (PAGE / "dist" / "main.js", PAGE / "dist" / "sframe-worker.js")
#: where the page goes in the built packages (signaling.page.PACKAGE_DIR)
PACKAGE_DIR = Path("signaling") / "static"


class CallPageMissing(SetupError):
    """No bundle of the call page, and no node/npm to build one."""


def build_page() -> None:
    """Bundle the page when web/'s npm packages are here; else require a prebuilt bundle."""
    npm = shutil.which("npm")
    if npm is not None and (WEB / "node_modules").is_dir():
        subprocess.run([npm, "--prefix", str(WEB), "run", "--silent", "build:page"], check=True)
    missing = [str(path.relative_to(ROOT)) for path in BUNDLE if not path.is_file()]
    if missing:
        raise CallPageMissing(
            f"the call page's bundle is missing ({', '.join(missing)}) and cannot be built here: "
            "install Node.js >= 20 and npm, run `npm --prefix web ci`, then build again "
            "(or build from an sdist, which carries the bundle)")


class BuildPyWithPage(build_py):
    """build_py, plus the call page copied into the built ``signaling/static``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        build_page()
        target = Path(self.build_lib) / PACKAGE_DIR
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(PAGE, target)


class SdistWithPage(sdist):
    """sdist, with the page bundled first so the sdist carries it (MANIFEST.in)."""

    def run(self) -> None:
        build_page()
        super().run()


setup(cmdclass={"build_py": BuildPyWithPage, "sdist": SdistWithPage})
