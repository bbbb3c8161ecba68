"""The API documentation pages in a real browser with every other host unreachable (each request to a host
other than the test server is aborted, as on a machine without internet): each renders its UI, from our own
files, with no Content-Security-Policy violation. And axe-core on the pages: no serious or critical finding.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from core.testing import ServerProcess

from .test_pages_browser import CSP_LISTENER, browser, log_in, make_user, new_page, off_loop, server  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Redoc's bundle always draws "API docs by Redocly" with this remote logo (no option turns it off); the policy
# blocks it before any request is made, and Redoc hides the image when it fails. The one violation allowed.
REDOC_REMOTE_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def offline(context: BrowserContext, server: ServerProcess) -> list[str]:  # noqa: F811
    """Abort every request to another host; returns the list of those that were tried."""
    ours = urlsplit(server.http_url).netloc
    tried: list[str] = []

    def route(route: Route) -> None:
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            tried.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    return tried


def test_each_api_docs_page_renders_offline_from_our_files_without_a_policy_violation(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    context, page = new_page(browser, server)
    foreign = offline(context, server)
    context.add_init_script(CSP_LISTENER)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    violations: dict[str, list[str]] = {}

    def settle(path: str) -> None:
        page.wait_for_load_state("networkidle")
        violations[path] = page.evaluate("window.__csp")

    page.goto("/")
    page.get_by_role("contentinfo").get_by_role("link", name="API documentation").click()
    expect(page).to_have_url(re.compile(r"/api/docs/$"))
    expect(page.get_by_role("heading", name="API documentation")).to_be_visible()
    for name, href in (("Swagger UI", "/api/schema/ui/"), ("Redoc", "/api/schema/redoc/"), ("GraphiQL", "/graphql")):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_attribute("href", href)
    settle("/api/docs/")

    page.goto("/api/schema/ui/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ChatTalk API")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    settle("/api/schema/ui/")

    page.goto("/api/schema/redoc/")
    expect(page.get_by_role("heading", name=re.compile(r"^ChatTalk API"))).to_be_visible()
    expect(page.locator("[data-section-id^='operation/']").first).to_be_attached()
    settle("/api/schema/redoc/")

    page.goto("/graphql")  # a browser's Accept: text/html gets GraphiQL (DEBUG is on in test servers)
    expect(page.locator(".graphiql-container")).to_be_visible()
    # The documentation explorer lists the root types only once the introspection query came back.
    page.get_by_role("button", name="Show Documentation Explorer").click()
    expect(page.locator(".graphiql-doc-explorer")).to_contain_text("Query")
    settle("/graphql")
    context.close()

    assert foreign == []
    assert violations.pop("/api/schema/redoc/") in ([], [f"img-src blocked {REDOC_REMOTE_LOGO} in :0 "])
    assert {path: found for path, found in violations.items() if found} == {}
    assert [line for line in errors if REDOC_REMOTE_LOGO not in line] == []


def serious_findings(page: Page) -> dict[str, list[str]]:
    """axe-core's serious and critical violations on the page: rule id -> the elements it names."""
    results = Axe().run(page)
    return {
        violation["id"]: [str(node["target"]) for node in violation["nodes"]][:5]
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    }


def test_axe_finds_nothing_serious_on_our_pages(browser: Browser, server: ServerProcess) -> None:  # noqa: F811
    off_loop(make_user, "alice")
    context, page = new_page(browser, server)
    found: dict[str, dict[str, list[str]]] = {}
    for path in ("/", "/login/", "/signup/", "/api/docs/"):
        page.goto(path)
        found[path] = serious_findings(page)
    page.goto("/login/")
    page.click("[data-testid=login-form] button[type=submit]")  # an empty form: the page with its errors
    found["/login/ with errors"] = serious_findings(page)
    log_in(page, "alice")
    found["/rooms/"] = serious_findings(page)
    page.goto("/search/?q=hello")
    found["/search/"] = serious_findings(page)
    context.close()
    assert {path: rules for path, rules in found.items() if rules} == {}


# What axe finds inside the third-party documentation UIs (their own markup and colours, which we serve
# unchanged): pinned so that nothing new appears. Ours (the pages around them) are clean.
THIRD_PARTY_FINDINGS = {
    "/api/schema/ui/": {"color-contrast", "nested-interactive"},
    "/api/schema/redoc/": {"color-contrast"},
    "/graphql": {"color-contrast", "label", "scrollable-region-focusable"},
}


def test_axe_finds_no_new_serious_problem_in_the_documentation_uis(
    browser: Browser,  # noqa: F811
    server: ServerProcess,  # noqa: F811
) -> None:
    context, page = new_page(browser, server)
    offline(context, server)
    found = {}
    ready = {
        "/api/schema/ui/": ".swagger-ui .opblock",
        "/api/schema/redoc/": "[data-section-id^='operation/']",
        "/graphql": ".graphiql-container .CodeMirror",
    }
    for path, selector in ready.items():
        page.goto(path)
        page.locator(selector).first.wait_for()
        found[path] = set(serious_findings(page))
    context.close()
    assert {path: rules - THIRD_PARTY_FINDINGS[path] for path, rules in found.items()} == {p: set() for p in found}
