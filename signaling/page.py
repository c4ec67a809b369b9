"""Where the call page is: the static root ``mlscall serve`` and ``mlscall demo`` serve.

An installed wheel carries the page as package data under ``signaling/static``
(the build copies web/public there, the bundle built by ``npm --prefix web
run build``; see setup.py); a checkout serves its own ``web/public``. The page
is the browser side of the signaling protocol (docs/protocol.md): ``GET /``
answers its ``index.html`` (:mod:`signaling.http_api`).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

#: the package directory the wheel's build fills with the page
PACKAGE_DIR = "static"
#: the checkout's page, beside the Python packages
CHECKOUT_DIR = Path(__file__).resolve().parent.parent / "web" / "public"


def call_page_dir(installed: Traversable | None = None, checkout: Path = CHECKOUT_DIR) -> Path:
    """The directory holding the call page's ``index.html``.

    The installed package's copy (``installed``, default ``signaling/static``
    found through :mod:`importlib.resources`) when it has the page, else the
    checkout's ``web/public`` (returned even when empty: the server then
    serves no page).
    """
    resource = installed if installed is not None else files(__package__).joinpath(PACKAGE_DIR)
    if isinstance(resource, Path) and (resource / "index.html").is_file():
        return resource
    return checkout
