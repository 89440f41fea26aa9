"""Transport and script hardening of the pages.

- With an https PUBLIC_BASE_URL every response carries Strict-Transport-Security, so a
  browser never again tries the site over plain http (where cookies could be stripped).
- htmx never runs a <script> that arrives in swapped-in HTML (allowScriptTags false):
  checked in a real browser, where a script from the site's own origin (allowed by the
  CSP) would otherwise run.
"""
from __future__ import annotations

import re

import pytest

from tests.support.processes import wait_for


@pytest.mark.parametrize("path", ["/login", "/static/style.css", "/api/v1/me", "/no-such-page", "/healthz"])
def test_https_site_sends_hsts_on_every_response(app, client, path):
    app.config["PUBLIC_BASE_URL"] = "https://deltacrown.example"
    header = client.get(path).headers.get("Strict-Transport-Security")
    assert header, path
    max_age = int(re.search(r"max-age=(\d+)", header).group(1))
    assert max_age >= 180 * 24 * 3600


def test_plain_http_site_sends_no_hsts(client):
    # localhost over http: HSTS would pin every local app on localhost to https
    assert "Strict-Transport-Security" not in client.get("/login").headers


# --- htmx in a real browser -------------------------------------------------------------

@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'browser.sqlite'}"


PROBE = "window.probesRun = (window.probesRun || []).concat([{n}]);"


def test_htmx_does_not_run_scripts_in_swapped_html(page, live_server):
    # Scripts served from the site itself: the CSP allows them, so only htmx's setting stops them.
    page.route(re.compile(r".*/static/probe-\d+\.js$"), lambda route: route.fulfill(
        status=200, content_type="application/javascript",
        body=PROBE.format(n=re.search(r"probe-(\d+)", route.request.url).group(1))))
    page.goto("/login")
    wait_for(lambda: page.evaluate("() => typeof htmx !== 'undefined'"), 20, interval=0.1, message="htmx to load")
    assert page.evaluate("() => htmx.config.allowScriptTags") is False

    page.evaluate("""() => {
        const target = document.createElement('div');
        target.id = 'swap-target';
        document.body.appendChild(target);
        htmx.swap('#swap-target', '<script src="/static/probe-1.js"></script><p id="swapped-1">one</p>',
                  {swapStyle: 'beforeend'});
    }""")
    page.wait_for_selector("#swapped-1", state="attached")

    # The same swap with scripts allowed does run its script: the check above can see one run.
    # htmx inserts scripts in order (not async), so had probe 1 been inserted it would run first.
    page.evaluate("""() => {
        htmx.config.allowScriptTags = true;
        htmx.swap('#swap-target', '<script src="/static/probe-2.js"></script><p id="swapped-2">two</p>',
                  {swapStyle: 'beforeend'});
    }""")
    wait_for(lambda: page.evaluate("() => window.probesRun"), 20, interval=0.1, message="the allowed script to run")
    assert page.evaluate("() => window.probesRun") == [2]
