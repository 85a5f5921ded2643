"""The web page in headless Chromium (Selenium): load /, ask a question with
the store switch on, see the answer stream in (several updates of the answer
bubble), its sources listed, one source opened; screenshot in
build/serve_page.png."""
import os, shutil, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from util import Checks, Server, ROOT, KEY  # noqa: E402

t = Checks("test_web.py")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    t.skip("no selenium in this Python (scripts/setup installs it in .venv)")
    t.end()
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
driver_bin = shutil.which("chromedriver")
if not chromium or not driver_bin:
    t.skip("Debian's chromium and chromium-driver are not installed (scripts/setup installs them)")
    t.end()

srv = Server("-np", "2", "-c", "4096", "--verbose")
opts = webdriver.ChromeOptions()
opts.binary_location = chromium
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,800"):
    opts.add_argument(a)
drv = webdriver.Chrome(service=Service(driver_bin), options=opts)
try:
    drv.set_page_load_timeout(60)
    drv.get(srv.base + "/")
    t.check(drv.title == "sabio", f"page title {drv.title!r}")
    drv.execute_script("localStorage.setItem('sabio-key', arguments[0]);", KEY)
    drv.get(srv.base + "/")
    wait = WebDriverWait(drv, 300)
    wait.until(lambda d: d.find_element(By.ID, "store").get_attribute("value") == "docs")
    box = drv.find_element(By.ID, "use-store")
    t.check(box.is_selected() and box.is_enabled(), "the store switch is on when the server has a store")
    t.check("SmolLM2" in drv.find_element(By.ID, "model").text, "the model's name is shown")
    # count the answer bubble's updates to see it stream
    drv.execute_script("""
        window.__updates = 0;
        new MutationObserver(() => { const a = document.querySelector('.msg.assistant');
            if (a && a.textContent) window.__updates++; })
          .observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});""")
    mt = drv.find_element(By.ID, "max-tokens")
    mt.clear()
    mt.send_keys("40")
    drv.find_element(By.ID, "q").send_keys("What must be worn near the laser bench?")
    drv.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".sources li a"))
    answer = drv.find_element(By.CSS_SELECTOR, ".msg.assistant").text
    updates = drv.execute_script("return window.__updates;")
    t.check(answer.strip() != "", f"an answer appears: {answer!r}")
    t.check(updates >= 3, f"the answer streamed in ({updates} updates)")
    links = drv.find_elements(By.CSS_SELECTOR, ".sources li a")
    t.check(any("page.html" in a.text for a in links), f"sources listed under the answer: {[a.text for a in links]}")
    first = next((a for a in links if "page.html" in a.text), links[0])
    first.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".sources pre") and
               d.find_element(By.CSS_SELECTOR, ".sources pre").text.strip())
    opened = drv.find_element(By.CSS_SELECTOR, ".sources pre").text
    t.check("Wear goggles" in opened or "Lab handbook" in opened or "Freezer" in opened,
            f"a source opens with its passage: {opened!r}")
    status = drv.find_element(By.ID, "status").text
    t.check(status.startswith("done"), f"status line: {status!r}")
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    shot = os.path.join(ROOT, "build", "serve_page.png")
    drv.save_screenshot(shot)
    t.check(os.path.getsize(shot) > 10000, f"screenshot saved: {shot}")
    print(f"test_web.py: screenshot {shot}; answer {answer!r}; {updates} updates", file=sys.stderr)
except Exception as e:  # noqa: BLE001
    drv.save_screenshot(os.path.join(ROOT, "build", "serve_page_failed.png"))
    t.check(False, f"page test stopped: {e!r}; server log: {srv.log_text()[-800:]}")
finally:
    drv.quit()
srv.finish(t)
t.end()
