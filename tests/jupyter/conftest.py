"""Tests that start real Jupyter applications (see jupyter_apps.py); they read Kafka back like
tests/sinks/kafka (helpers.kafka_readback)."""

from __future__ import annotations

import pytest
from helpers.servers import kafka_bootstrap


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Bootstrap servers of a Kafka-protocol broker for a module (KAFKA_BOOTSTRAP_SERVERS if set)."""
    with kafka_bootstrap(tmp_path_factory.mktemp("tansu")) as servers:
        yield servers


@pytest.fixture(scope="module")
def browser():
    """Debian's headless chromium through Playwright, for a module."""
    from lab_env import CHROMIUM_ARGS, chromium_path
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def users(browser):
    """``users(lab, **context)``: JupyterLab open for a new Jupyter user (a new browser context).

    At the end of the test each context is closed, after checking that the extension wrote no
    error to its console and none of its requests failed.
    """
    from lab_env import lab_page

    opened = []

    def open_lab(lab, **context):
        ctx, page = lab_page(browser, lab, **context)
        opened.append((ctx, page))
        return page

    yield open_lab
    for ctx, page in opened:
        errors = page.our_errors()
        ctx.close()
        assert errors == [], f"errors of the extension in the browser console: {errors}"
