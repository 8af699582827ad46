"""The web console in a real browser: Playwright driving Debian's headless Chromium against a
demo server's --http listener. It loads, draws the demo pipeline (the source, its views, rows per
second), runs a query from the SQL box into a results table, charts a view's time series, shows
an error for bad SQL, and opens the source-errors and late-rows pages.
Usage: console.py HTTP_PORT [CHROMIUM]. Exits non-zero on the first failure; writes a screenshot
beside it on failure."""

import re
import sys

from playwright.sync_api import expect, sync_playwright

PORT = int(sys.argv[1])
CHROMIUM = sys.argv[2] if len(sys.argv) > 2 else "/usr/bin/chromium"
URL = f"http://127.0.0.1:{PORT}/"


def check(what, cond, detail=""):
    if not cond:
        print(f"FAIL console: {what} {detail}")
        sys.exit(1)
    print(f"ok   console: {what}")


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(URL)
            check("page loads", page.title() == "Weir console", page.title())

            # The demo pipeline: the source and its views as graph nodes, with live figures.
            for node in ["source:readings", "view:sensor_stats_10s", "view:hot_readings"]:
                expect(page.locator(f'g.node[data-id="{node}"]')).to_be_visible(timeout=15000)
            check("graph shows the demo source and views", True)
            edges = page.locator("path.edge").count()
            check("graph draws edges from the source to its views", edges >= 4, edges)
            expect(page.locator('g.node[data-id="view:sensor_stats_10s"]')).to_contain_text("rows/s", timeout=10000)
            # Throughput is the difference between two refreshes: wait for a non-zero one.
            expect(page.locator('g.node[data-id="view:sensor_stats_10s"]')).to_contain_text(
                re.compile(r"[1-9]\d* rows/s"), timeout=15000)
            check("a view shows its throughput", True)

            # The SQL box: a query into a results table.
            page.click('button[data-page="sql"]')
            page.fill("#query", "SELECT name, status FROM weir_views WHERE name = 'hot_readings'")
            page.click("#run")
            expect(page.locator("#result table")).to_contain_text("hot_readings", timeout=10000)
            check("a query's rows appear in a table", True)

            # A time series of a view, charted.
            page.fill("#query", "SELECT window_end, sum(readings) AS readings FROM sensor_stats_10s GROUP BY window_end ORDER BY window_end")
            page.click("#run")
            expect(page.locator("#result table")).to_be_visible(timeout=10000)
            page.click("#plot")
            expect(page.locator("#chart polyline")).to_have_count(1, timeout=5000)
            points = page.locator("#chart polyline").get_attribute("points") or ""
            check("a view's time series is charted", len(points.split()) >= 1, points)

            # Bad SQL: the error, with its SQLSTATE.
            page.fill("#query", "SELECT * FROM no_such_view")
            page.click("#run")
            expect(page.locator("#result .error")).to_contain_text("42P01", timeout=10000)
            check("an error shows its SQLSTATE", True)

            # The source errors and late rows pages.
            page.click('button[data-page="errors"]')
            expect(page.locator("#errors-table")).to_contain_text("rows", timeout=10000)
            page.click('button[data-page="late"]')
            expect(page.locator("#late-table")).to_contain_text("rows", timeout=10000)
            check("source errors and late rows pages load", True)
            check("no script errors", not errors, errors)
        except Exception as e:  # keep what the browser showed
            page.screenshot(path="console-failure.png", full_page=True)
            print(f"FAIL console: {e}")
            sys.exit(1)
        finally:
            browser.close()
    print("console checks passed")


if __name__ == "__main__":
    main()
