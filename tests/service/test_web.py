"""The web page in a real headless Chromium against a real `fitaas serve`: log in, submit
the demo pallet, watch it finish, see the table and the CLs picture."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

import fitaas
from conftest import CHROMIUM, CHROMIUM_ARGS
from fitaas.service import db
from fitaas.service.accounts import add_user
from pallet_builders import variant
from service_process import running


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_log_in_submit_and_watch_a_job_in_a_browser(tmp_path: Path, demo: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    database = f"sqlite:///{tmp_path / 'web.sqlite'}"
    engine = db.connect(database)
    alice = add_user(engine, "alice", ("atlas",))
    bob = add_user(engine, "bob")
    engine.dispose()
    with running(database, tmp_path) as service, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            messages: list[str] = []
            page.on("console", lambda m: messages.append(m.text))
            page.goto(service.url + "/")
            page.fill("#token", "fitaas_not-a-token")
            page.click("#login-form button")
            sync_api.expect(page.locator("#login-error")).to_contain_text(
                "Tokens come from your site's admin"
            )

            page.fill("#token", alice)
            page.click("#login-form button")
            sync_api.expect(page.locator("#who")).to_contain_text("alice (atlas)")
            page.set_input_files("#ws-file", str(demo / "BkgOnly.json"))
            page.set_input_files("#ps-file", str(demo / "patchset.json"))
            page.click("#submit-button")
            sync_api.expect(page.locator("#submit-status")).to_contain_text("submitted job")
            # live progress: the job page follows the job to the end
            sync_api.expect(page.locator("#job-state")).to_have_text("done", timeout=180_000)
            sync_api.expect(page.locator("#job-counts")).to_have_text("20/20 done, 0 failed")
            rows = page.locator("#results tbody tr")
            sync_api.expect(rows).to_have_count(20)
            sync_api.expect(page.locator("#plot")).to_be_visible(timeout=30_000)
            # (the picture drawn after the last point follows the one sent meanwhile; the
            # page's policy forbids eval, so no wait_for_function with a string here)
            sync_api.expect(page.locator("#plot-note")).to_contain_text("20 of 20", timeout=30_000)
            width = page.eval_on_selector("#plot", "img => img.naturalWidth")
            assert width > 300
            # the table sorts: by observed CLs, ascending
            page.click("#results th[data-key=cls_obs]")
            column = page.eval_on_selector_all(
                "#results tbody tr td:nth-child(5)", "cells => cells.map(c => c.textContent)"
            )
            assert all(re.fullmatch(r"<0\.0001|\d\.\d{4}", v) for v in column), column
            values = [0.0 if v.startswith("<") else float(v) for v in column]
            assert values == sorted(values) and values[0] < 0.05 < values[-1]
            jobs = page.locator("#jobs tbody tr")
            sync_api.expect(jobs).to_have_count(1)
            sync_api.expect(jobs.first.locator(".state")).to_have_text("done")
            page.screenshot(path=str(tmp_path / "web.png"), full_page=True)

            # a toy job from the form: each point's toy distributions on a click
            page.fill("#ntoys", "100")
            page.fill("#patches", "demo_700_0")
            page.click("#submit-button")
            sync_api.expect(jobs).to_have_count(2, timeout=30_000)
            sync_api.expect(page.locator("#job-counts")).to_contain_text("/1 done")
            sync_api.expect(page.locator("#toy-note")).to_be_visible(timeout=180_000)
            sync_api.expect(page.locator("#job-state")).to_have_text("done", timeout=180_000)
            page.locator("#results tbody tr").first.click()
            sync_api.expect(page.locator("#toy-plot")).to_be_visible(timeout=30_000)
            width = page.eval_on_selector("#toy-plot", "img => img.naturalWidth")
            assert width > 300

            # a sweep (from the Python client): results, picture and downloads per pallet
            plus3 = variant(demo, tmp_path / "plus3", 3)
            with fitaas.Client(service.url, alice) as api:
                sweep = api.submit_pallets([demo, plus3])
            page.goto(f"{service.url}/#job={sweep.id}")
            sync_api.expect(page.locator("#job-state")).to_have_text("done", timeout=180_000)
            sync_api.expect(page.locator("#pallet-choice")).to_be_visible()
            assert page.locator("#pallet option").all_text_contents() == [demo.name, "plus3"]
            first_cls = page.locator("#results tbody tr td:nth-child(5)")
            sync_api.expect(page.locator("#results tbody tr")).to_have_count(20)
            before = first_cls.all_text_contents()
            page.select_option("#pallet", "plus3")
            for _ in range(100):  # the other pallet's table (3 more events observed per bin)
                page.wait_for_timeout(300)
                shown = first_cls.all_text_contents()
                if len(shown) == 20 and shown != before:
                    break
            after = first_cls.all_text_contents()
            assert len(after) == 20 and after != before
            sync_api.expect(page.locator("#plot")).to_be_visible(timeout=30_000)

            # Names with markup, as a database edited by other means could hold (fitaas's admin
            # commands refuse them): the page used to put them into innerHTML unescaped.
            hostile = '<img src=x onerror="window.pwned=1">'
            engine = db.connect(database)
            with engine.begin() as conn:
                conn.execute(
                    sa.update(db.users).where(db.users.c.name == "alice").values(name=hostile)
                )
                conn.execute(
                    sa.update(db.endpoints)
                    .where(db.endpoints.c.name == "local")
                    .values(name=hostile)
                )
            engine.dispose()
            page.reload()
            sync_api.expect(jobs.first).to_contain_text(hostile)
            sync_api.expect(page.locator("#who")).to_contain_text(hostile)
            assert page.locator("#endpoint option").all_text_contents() == [hostile]
            page.wait_for_timeout(500)
            assert page.evaluate("window.pwned") is None
            assert page.locator("img:not(#plot):not(#toy-plot)").count() == 0
            # the page runs under its own Content Security Policy without a violation
            assert not [m for m in messages if "Content Security Policy" in m], messages

            # bob logs in on a fresh page: none of alice's jobs
            other = browser.new_page()
            other.goto(service.url + "/")
            other.fill("#token", bob)
            other.click("#login-form button")
            sync_api.expect(other.locator("#who")).to_contain_text("bob")
            other.wait_for_timeout(1500)
            assert other.locator("#jobs tbody tr").count() == 0
            assert not re.search("demo_", other.content())
        finally:
            browser.close()
    assert (tmp_path / "web.png").stat().st_size > 20_000
