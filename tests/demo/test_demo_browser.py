"""The demo in a real browser: create and edit an item on the master's page and watch the replica's
page show it with its revision. Screenshots: ``.artifacts/demo/{master,replica}.png``.

Needs Debian's ``chromium`` (``apt-get install -y chromium chromium-driver``) and the ``playwright``
Python package (its bundled driver only: no browser is downloaded).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.demo.conftest import ARTIFACTS, RunningDemo

CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason='needs /usr/bin/chromium (apt-get install -y chromium)'),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip('playwright.sync_api', reason='needs the playwright package')
    profile = tmp_path / 'chromium-profile'
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={'width': 1280, 'height': 860},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


def test_create_and_edit_on_the_master_show_up_on_the_replica(demo: RunningDemo, browser: Any) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    demo.wait_replica(lambda s: len(s['items']) == 3)
    master = browser.new_page()
    master.goto(demo.master)
    expect(master.locator('header .service')).to_have_text('Catalog')

    master.fill('#id_name', 'Pour-over kettle')
    master.select_option('#id_category', label='Coffee')
    master.fill('#id_price', '39.90')
    master.fill('#id_available_from', '2030-05-06T07:08')
    master.click('#item-form button[type=submit]')
    expect(master.locator('#message')).to_contain_text('Created “Pour-over kettle” (revision 0)')

    row = master.locator('#items tr', has_text='Pour-over kettle')
    row.get_by_role('link', name='Edit').click()
    master.fill('#id_price', '34.50')
    master.uncheck('#id_in_stock')
    master.click('#item-form button[type=submit]')
    expect(master.locator('#message')).to_contain_text('Saved “Pour-over kettle” (revision 1)')
    expect(row.locator('.rev')).to_have_text('1')

    replica = browser.new_page()
    replica.goto(demo.replica)
    copy = replica.locator('#items tbody tr', has_text='Pour-over kettle')
    expect(copy.locator('.rev')).to_have_text('1', timeout=30_000)
    expect(copy).to_contain_text('34.50')
    expect(copy).to_contain_text('Coffee')
    expect(copy.locator('.pill')).to_have_text('no')
    expect(copy.locator('.arrived')).to_contain_text('ago')
    expect(replica.locator('#stat-applied .value')).not_to_have_text('–')
    expect(replica.locator('#stat-outbox .value')).to_have_text('0', timeout=30_000)
    expect(replica.locator('#stat-dead .value')).to_have_text('0')
    expect(replica.locator('#live')).to_have_class('live')

    # A change while the replica's page is open arrives without a reload.
    master.goto(demo.master)
    master.locator('#items tr', has_text='Hand grinder').get_by_role('link', name='Edit').click()
    master.fill('#id_name', 'Hand grinder (ceramic burrs)')
    master.click('#item-form button[type=submit]')
    expect(master.locator('#message')).to_contain_text('revision 1')
    expect(
        replica.locator('#items tbody tr', has_text='Hand grinder (ceramic burrs)').locator('.rev')
    ).to_have_text('1', timeout=30_000)

    # Let the highlights fade and the outbox tile catch up, for calm pictures.
    master.wait_for_timeout(2600)
    master.screenshot(path=str(ARTIFACTS / 'master.png'), full_page=True)
    replica.screenshot(path=str(ARTIFACTS / 'replica.png'), full_page=True)
