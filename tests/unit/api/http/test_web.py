"""The web page at /: served by the API with its own assets, without an API key, locked down
by its Content-Security-Policy."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.http.routes.web import WEB_DIR
from config import Settings

PAGE_FILES = ("index.html", "app.css", "app.js", "icon.svg")


def test_the_page_and_every_asset_it_names_are_served_from_here(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert sorted(references) == ["/web/app.css", "/web/app.js", "/web/icon.svg"]
    for reference in references:
        assert client.get(reference).status_code == 200, reference
    script = client.get("/web/app.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    # The script talks to this server only: every URL in it is a path.
    assert not re.search(r"""["'`]https?://(?!example\.com)""", script.text)


def test_the_policy_allows_only_the_pages_own_scripts_and_styles(client: TestClient) -> None:
    policy = client.get("/").headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "<script>" not in client.get("/").text, "no inline script (the policy forbids it)"
    assert " style=" not in client.get("/").text, "no inline style (the policy forbids it)"


def test_the_page_needs_no_api_key(client: TestClient, settings: Settings) -> None:
    settings.require_api_key = True
    for path in ("/", *(f"/web/{name}" for name in PAGE_FILES[1:])):
        assert client.get(path).status_code == 200, path
    assert client.get("/jobs").status_code == 401


def test_the_page_is_small_and_not_in_the_api_document(client: TestClient) -> None:
    assert sum((WEB_DIR / name).stat().st_size for name in PAGE_FILES) < 64 * 1024
    assert client.get("/web/missing.js").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]
