"""The web console (/console, service/console/) and the offline /docs and /redoc (service/pages.py), against the
real server (`python -m service`) serving the shipped model: Debian's Chromium, driven by Playwright, opens the
pages; the test fails on any page error, console error or request to another host, and saves screenshots to
docs/ (console.png, console-docs.png). Without /usr/bin/chromium (apt `chromium`) or the `playwright` package the
browser test skips, saying which is missing."""

import hashlib
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.service.conftest import ROOT, running_server

CHROMIUM = Path("/usr/bin/chromium")
BOOT, TROUSER = ROOT / "docs" / "example-ankle-boot.png", ROOT / "docs" / "example-trouser.png"
KEY = "vae_console-5e0c7a21b9"
TIMEOUT_MS = 30_000  # generous: the machine may be busy; nothing here asserts a time


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The shipped model alone: the server starts in seconds, with no model to train."""
    root = tmp_path_factory.mktemp("console_models")
    (root / "fashion-mnist").symlink_to(ROOT / "models" / "fashion-mnist")
    return root


def test_pages_are_public_and_the_api_keyed(models, tmp_path):
    """With API keys on, the static files (console, the docs' scripts) and `/` answer without a key; the API the
    console calls, /docs and /openapi.json still need one."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "console", "sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                                          "role": "user"}]}))
    with running_server(models, VAE_API_KEYS_FILE=str(keys)) as address, \
            httpx.Client(base_url=f"http://{address}", timeout=30) as client:
        r = client.get("/")
        assert r.status_code == 307 and r.headers["location"] == "/console/"
        assert client.get("/console").status_code == 307
        page = client.get("/console/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="api-key"' in page.text
        for path in ("/console/console.js", "/console/console.css", "/docs-assets/swagger-ui-bundle.js",
                     "/docs-assets/swagger-ui.css", "/docs-assets/redoc.standalone.js"):
            assert client.get(path).status_code == 200, path
        assert client.get("/console/nope.js").status_code == 404
        for path in ("/models", "/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 401, path
        auth = {"Authorization": f"Bearer {KEY}"}
        docs = client.get("/docs", headers=auth).text
        assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn." not in docs
        redoc = client.get("/redoc", headers=auth).text
        assert "/docs-assets/redoc.standalone.js" in redoc and "cdn." not in redoc and "fonts.googleapis" not in redoc
        spec = client.get("/openapi.json", headers=auth).json()
        assert not {"/", "/docs", "/redoc"} & set(spec["paths"])  # pages, not operations


def browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium: install Debian's chromium (scripts/test.sh does: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright package: pip install -e '.[dev]'"
    return None


def test_console_in_chromium(models):
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with running_server(models) as address, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            run_console(browser, address)
        finally:
            browser.close()


def run_console(browser, address: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    foreign: list[str] = []
    expected_422 = False  # set once the test provokes a 422 on purpose: Chromium logs each failed load

    def route(r):
        url = urlsplit(r.request.url)
        if url.scheme in ("data", "blob") or url.netloc == address:
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    def console(msg):
        if msg.type == "error" and not (expected_422 and "the server responded with a status of 422" in msg.text):
            problems.append(f"console error: {msg.text}")

    page.route("**/*", route)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # (a fetch still in flight when the test navigates away is cancelled, net::ERR_ABORTED: not a failure)
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} {req.failure}")
            if req.failure != "net::ERR_ABORTED" else None)
    page.on("console", console)

    def check_clean(where: str) -> None:
        assert not foreign, f"{where}: requests to other hosts: {foreign}"
        assert not problems, f"{where}: {problems}"

    # `/` redirects to the console; the model card and a sample grid appear.
    page.goto(f"http://{address}/")
    assert page.url == f"http://{address}/console/"
    page.wait_for_function("document.querySelectorAll('#model option').length >= 1")
    assert page.locator("#model").input_value() == "fashion-mnist"
    page.wait_for_function("document.querySelector('#card').textContent.includes('latent size')")
    card = page.locator("#card").inner_text()
    assert "32" in card and "gaussian" in card and "bits/dim" in card and "ELBO" in card
    page.wait_for_function("document.querySelectorAll('#samples img').length === 16")
    first_sample = page.locator("#samples img").first.get_attribute("src")

    # Two real Fashion-MNIST PNGs: reconstructions, latent means, log-likelihoods, the interpolation strip.
    page.set_input_files("#files", [str(BOOT), str(TROUSER)])
    page.wait_for_function("document.querySelectorAll('#results img.recon').length === 2")
    for img in page.locator("#results img.recon").all():
        assert img.get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_function("document.querySelectorAll('#results .loglik').length === 2")
    for text in page.locator("#results .loglik").all_inner_texts():
        assert text.startswith("log-likelihood ") and "nats" in text
    assert len(page.locator("#results .ess").all_inner_texts()) == 2
    assert page.locator("#results svg.bars").count() == 2
    assert page.locator("#results svg.bars").first.locator("rect").count() == 32
    page.wait_for_function("document.querySelectorAll('#strip img').length === 10")

    # A latent slider: the decoded image changes (one /decode after the debounce).
    page.wait_for_function("(document.querySelector('#decoded').getAttribute('src') || '').startsWith('data:')")
    assert page.locator("#sliders input[type=range]").count() == 8
    before = page.locator("#decoded").get_attribute("src")
    page.locator("#z-0").fill("-2.5")
    page.wait_for_function("src => document.querySelector('#decoded').getAttribute('src') !== src", arg=before)

    # The sample grid is drawn again when a control changes.
    page.locator("#seed").fill("7")
    page.locator("#seed").dispatch_event("change")
    page.wait_for_function("src => document.querySelector('#samples img').getAttribute('src') !== src",
                           arg=first_sample)
    page.wait_for_function("document.querySelector('#samples').dataset.seed === '7'")

    # Every control has a name for screen readers.
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.id || e.outerHTML)""")
    assert unlabelled == []
    check_clean("console")
    page.wait_for_timeout(300)  # the last debounced redraws land before the picture is taken
    page.screenshot(path=str(ROOT / "docs" / "console.png"), full_page=True)

    # An error from the service is shown in the page: k above the server's limit is a 422 naming query.k.
    expected_422 = True
    page.locator("#k").fill("999999")
    page.locator("#k").dispatch_event("change")
    page.wait_for_function("document.querySelector('#errors').textContent.includes('query.k')")
    assert page.locator("#errors").get_attribute("aria-live") == "assertive"
    page.wait_for_load_state("networkidle")

    # /docs and /redoc render from the local assets.
    page.goto(f"http://{address}/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() >= 10
    assert page.locator(".opblock-summary-path", has_text="/loglik").count() >= 1
    page.screenshot(path=str(ROOT / "docs" / "console-docs.png"))
    page.goto(f"http://{address}/redoc")
    page.wait_for_selector("text=/loglik")
    assert "VAE service" in page.locator("h1").first.inner_text()
    check_clean("docs")
    page.close()


def test_console_files_are_package_data():
    """The console's files ship in the wheel (pyproject.toml's package-data), beside service/pages.py."""
    import tomllib

    from service.pages import CONSOLE_DIR
    names = {p.name for p in CONSOLE_DIR.iterdir()}
    assert {"index.html", "console.js", "console.css"} <= names
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    assert {"console/*.html", "console/*.js", "console/*.css"} <= set(data)
