"""Driving the call page in headless Chromium (Debian's /usr/bin/chromium through Playwright):
the browser's path and flags and the readers of the page's ``Call.status()``, shared by the
browser tests of tests/web and tests/signaling (a test module of one folder is not importable
from the other when run on its own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-first-run", "--autoplay-policy=no-user-gesture-required",
]


async def page_status(page: Page) -> dict[str, Any]:
    """The page's Call.status(), or an empty dict before the call object exists."""
    return await page.evaluate("window.mlscall.call ? window.mlscall.call.status() : {}")


def browser_decrypted(page_view: dict[str, Any], remote: str, kind: str = "video") -> int:
    """Frames of ``remote``'s ``kind`` the page decrypted, by its status."""
    return page_view["remotes"].get(remote, {}).get(kind, {}).get("decrypted", 0)
