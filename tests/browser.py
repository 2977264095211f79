"""Drive Snakemake's HTML report in headless Chromium (Debian's chromium + chromium-driver)."""

import contextlib
import time
from pathlib import Path

import numpy as np
from PIL import Image


@contextlib.contextmanager
def open_report(report: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(report.resolve().as_uri())
        wait_for(browser, "//*[text()='Workflow']")
        yield browser
    finally:
        browser.quit()


# Waits below are for events (an element shown, an image loaded); the ceilings only end a wait
# for one that will never come, and a slow or busy machine waits as long as it needs.
CEILING = 300.0


def wait_for(browser, xpath: str, seconds: float = CEILING):
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + seconds
    while True:
        try:
            return browser.find_element(By.XPATH, xpath)
        except NoSuchElementException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def click(browser, xpath: str, seconds: float = CEILING) -> None:
    """Click once the element takes clicks: the report's menu slides in, and a click during
    the slide lands on the element underneath."""
    from selenium.common.exceptions import ElementClickInterceptedException

    deadline = time.monotonic() + seconds
    while True:
        try:
            wait_for(browser, xpath).click()
            return
        except ElementClickInterceptedException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def show_item(browser, category: str, subcategory: str | None, label: str):
    """Navigate from a fresh start page to one result and return its <img> element."""
    browser.get(browser.current_url.split("#")[0])
    wait_for(browser, "//*[text()='Workflow']")
    click(browser, f"//*[text()='{category}']")
    if subcategory:
        click(browser, f"//*[text()='{subcategory}']")
    click(browser, f"//tr[td[text()='{label}']]//a[@iconname='eye']")
    image = wait_for(browser, "//img[starts-with(@src, 'data:image/png')]")
    deadline = time.monotonic() + CEILING
    while not browser.execute_script("return arguments[0].complete", image):
        assert time.monotonic() < deadline, f"the image of {label} never finished loading"
        time.sleep(0.2)
    return image


def shown_plot_stats(screenshot: Path, rect: dict) -> tuple[int, float]:
    """(distinct colours, share of dark pixels) inside the image's box on the screenshot:
    a drawn plot has axes, text and lines; a broken or blank image has neither."""
    with Image.open(screenshot) as shot:
        box = (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"])
        region = shot.convert("RGB").crop(tuple(int(v) for v in box))
        pixels = np.asarray(region, dtype=np.int32).reshape(-1, 3)
    if len(pixels) == 0:
        return 0, 0.0
    dark = float((pixels.sum(axis=1) < 200).mean())
    return len(np.unique(pixels, axis=0)), dark
