"""Open Superset dashboards in headless Chromium as a person would (run with .venv-superset's python).

    python superset/browser_check.py http://127.0.0.1:8088 OUT_DIR SLUG [SLUG ...] --user admin

Logs in through the login form (password from $SUPERSET_ADMIN_PASSWORD), opens each dashboard,
waits until every chart has finished loading, records the charts that show an error panel or no
data, and saves a full-page screenshot OUT_DIR/<slug>.png. Prints one JSON line with the results.
Uses Debian's chromium: Playwright's own browser download cannot be had here.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
CHART = '[data-test="dashboard-component-chart-holder"]'
LOADING = '[data-test="loading-indicator"]'
# What a chart shows instead of itself when its query or rendering failed.
ERROR = '.error-alert, [data-test="error-tooltip"], .ant-alert-error, [role="alert"]'
EMPTY = '.ant-empty, [data-test="no-results"]'

# Runs in the page: each chart holder's state. A chart is drawn when its container holds a
# canvas (ECharts), a table, or a figure (big number), and nothing in it is loading.
STATES = """
([chart, loading, error, empty]) => Array.from(document.querySelectorAll(chart)).map((holder) => {
  const container = holder.querySelector('[data-test="chart-container"]');
  const isLoading = holder.querySelector(loading) !== null;
  const errorPanel = holder.querySelector(error);
  const text = container ? container.innerText : '';
  return {
    title: holder.innerText.split('\\n')[0],
    loading: isLoading,
    error: errorPanel ? errorPanel.innerText.slice(0, 300) : null,
    empty: holder.querySelector(empty) !== null || /No results were returned/.test(holder.innerText),
    drawn: !isLoading && container !== null
      && (container.querySelector('canvas, table') !== null || /[0-9]/.test(text)),
  };
})
"""


def settled(states: list[dict]) -> bool:
    return bool(states) and all(not s["loading"] and (s["drawn"] or s["error"] or s["empty"]) for s in states)


def login(context, base_url: str, user: str, password: str) -> None:
    """Post the login form through the browser's own cookie jar. Submitting it in the page races
    with the page's unload beacon (POST /superset/log/), whose response can overwrite the fresh
    session cookie with an anonymous one: every later request is then a 401."""
    html = context.request.get(f"{base_url}/login/").text()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    response = context.request.post(f"{base_url}/login/", max_redirects=0,
                                    form={"csrf_token": token.group(1) if token else "", "username": user,
                                          "password": password})
    if response.status != 302 or "/login" in (response.headers.get("location") or ""):
        raise SystemExit(f"login as {user!r} failed (HTTP {response.status})")


def local_only(context, base_url: str) -> None:
    """Abort requests that leave the machine (Superset's page embeds a telemetry pixel)."""
    host = urlparse(base_url).hostname

    def route(route):
        if urlparse(route.request.url).hostname in (host, "localhost", "127.0.0.1"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", route)


def check(page, base_url: str, slug: str, out_dir: str, timeout: float) -> dict:
    screenshot = os.path.join(out_dir, f"{slug}.png")
    try:
        page.goto(f"{base_url}/superset/dashboard/{slug}/", timeout=timeout * 1000)
        page.wait_for_selector(CHART, timeout=timeout * 1000)
    except Exception as error:  # noqa: BLE001 - reported, with a screenshot of what the page shows
        page.screenshot(path=screenshot, full_page=True)
        return {"slug": slug, "title": page.title(), "charts": 0, "rendered": 0, "empty": [],
                "errors": [f"the dashboard did not show its charts: {str(error).splitlines()[0]}"],
                "screenshot": screenshot}
    deadline = time.monotonic() + timeout
    states: list[dict] = []
    while time.monotonic() < deadline:
        states = page.evaluate(STATES, [CHART, LOADING, ERROR, EMPTY])
        if settled(states):
            page.wait_for_timeout(1500)  # the charts' animations
            page.screenshot(path=screenshot, full_page=True)
            # An auto-refreshing dashboard may have started reloading a chart meanwhile: again.
            states = page.evaluate(STATES, [CHART, LOADING, ERROR, EMPTY])
            if settled(states):
                break
        page.wait_for_timeout(1000)
    else:
        page.screenshot(path=screenshot, full_page=True)
    return {
        "slug": slug,
        "title": page.title(),
        "charts": len(states),
        "rendered": sum(1 for s in states if not s["loading"] and (s["drawn"] or s["empty"]) and not s["error"]),
        "errors": [f"{s['title'] or 'chart'}: {s['error']}" for s in states if s["error"]]
        + [f"{s['title'] or 'chart'}: still loading after {timeout:.0f}s" for s in states if s["loading"]],
        "empty": [s["title"] for s in states if s["empty"]],
        "screenshot": screenshot,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("out_dir")
    parser.add_argument("slugs", nargs="+")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        local_only(context, args.base_url)
        login(context, args.base_url, args.user, os.environ["SUPERSET_ADMIN_PASSWORD"])
        page = context.new_page()
        for slug in args.slugs:
            results.append(check(page, args.base_url, slug, args.out_dir, args.timeout))
        browser.close()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
