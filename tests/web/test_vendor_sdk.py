"""The real @vapi-ai/web SDK, installed from npm and bundled by scripts/build-vendor.sh, loads in Chromium.

Hosted mode imports `web/vendor/vapi-web.js` from the address `/api/config` names; Vapi itself cannot be reached
here, so this checks what can be checked without a call: the module loads from our server alone and its default
export is a class with every method and event call the page relies on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page

from harness.live_server import REPO, LiveServer

pytestmark = pytest.mark.browser

BUILD_SCRIPT = REPO / "scripts" / "build-vendor.sh"
VENDOR_FILE = REPO / "web" / "vendor" / "vapi-web.js"

# What web/views/companion.js and docs/vapi-compat.md use of the SDK.
PAGE_METHODS = ["start", "stop", "setMuted", "isMuted", "send", "say", "on", "once", "off", "removeAllListeners"]

# Loads the SDK the way the page does (the address from /api/config, the same default-export unwrapping), then
# exercises its event emitter; start() is never called because it would dial Vapi's servers.
LOAD_AND_PROBE = """
async (methods) => {
  const config = await (await fetch("/api/config")).json();
  const url = config.voice.sdk_url;
  const mod = await import(url);
  const Vapi = (mod.default && mod.default.default) || mod.default || mod.Vapi;
  const vapi = new Vapi("pk_test_vendor");
  const heard = [];
  const onMessage = (message) => heard.push(["on", message.type]);
  vapi.on("message", onMessage);
  vapi.once("call-end", () => heard.push(["once", "call-end"]));
  vapi.emit("message", { type: "transcript" });
  vapi.emit("call-end");
  vapi.emit("call-end");
  vapi.off("message", onMessage);
  vapi.emit("message", { type: "ignored-after-off" });
  vapi.on("speech-start", () => heard.push(["on", "speech-start"]));
  vapi.on("speech-start", () => heard.push(["again", "speech-start"]));
  // By event name: the SDK's no-argument form passes `undefined` on to `events` and so clears nothing.
  vapi.removeAllListeners("speech-start");
  vapi.emit("speech-start");
  await vapi.stop();  // no call yet: the page may stop before starting, which must not throw
  return {
    url,
    exportIsClass: typeof mod.default === "function" && vapi instanceof mod.default,
    missing: methods.filter((name) => typeof vapi[name] !== "function"),
    mutedBeforeCall: vapi.isMuted(),
    heard,
  };
}
"""


def _npm_available() -> bool:
    return shutil.which("npm") is not None and shutil.which("node") is not None


@pytest.fixture(scope="module")
def vendor_sdk() -> Path:
    """The bundled SDK, built now by the project's own script when it is missing or older than its pins."""
    if not _npm_available():
        if VENDOR_FILE.exists():
            return VENDOR_FILE
        reason = "npm is not installed, so scripts/build-vendor.sh cannot build web/vendor/vapi-web.js"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"build-vendor.sh failed:\n{result.stdout}\n{result.stderr}"
    assert VENDOR_FILE.is_file(), "build-vendor.sh succeeded but wrote no web/vendor/vapi-web.js"
    return VENDOR_FILE


def test_the_bundled_vapi_sdk_loads_as_the_page_loads_it(vendor_sdk: Path, page: Page, ui_server: LiveServer) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/signin")

    probe = page.evaluate(LOAD_AND_PROBE, PAGE_METHODS)

    assert probe["url"] == "/vendor/vapi-web.js"
    assert probe["exportIsClass"], "the module's default export is not the Vapi class"
    assert probe["missing"] == [], f"the SDK lacks methods the page calls: {probe['missing']}"
    assert probe["mutedBeforeCall"] is False
    # on() heard the message, once() fired a single time, off() and removeAllListeners() silenced the rest.
    assert probe["heard"] == [["on", "transcript"], ["once", "call-end"]]
    # Works offline until a call starts: the bundle and everything it needs came from our own server.
    origin = urlsplit(ui_server.base_url).netloc
    assert any(url.endswith("/vendor/vapi-web.js") for url in requested)
    outside = [url for url in requested if urlsplit(url).netloc != origin and not url.startswith("data:")]
    assert outside == [], f"loading the SDK reached outside the server: {outside}"
    assert vendor_sdk.stat().st_size > 0
