"""`pq serve`: /metrics parsed by Prometheus's own text-format parser, and the dashboard driven in
headless Chromium (Debian's chromium and chromium-driver, through Selenium): the page shows the
queues the test put, and requeueing a failed job in the browser puts it back in the table. A
screenshot is saved to target/artifacts/dashboard.png. scripts/test sets PQ_CLI."""
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

CLI = os.environ.get("PQ_CLI")
needs_cli = pytest.mark.skipif(not CLI, reason="scripts/test builds the pq tool and sets PQ_CLI")
TOKEN = "test-token-5f2a"
ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "..", "target", "artifacts")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db, sql):
    port = free_port()
    url = f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user=postgres dbname={db}"
    proc = subprocess.Popen([CLI, "serve", "--listen", f"127.0.0.1:{port}", "--token", TOKEN],
                            env=dict(os.environ, DATABASE_URL=url), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/metrics", timeout=1)
            break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("pq serve did not start: " + proc.communicate()[0])
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def eventually(check, seconds=5):
    """Waits for a click's request to finish: `check` holds within `seconds`."""
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, "not within %s s" % seconds
        time.sleep(0.05)


def fill(sql):
    """Two queues: 'orchard' with a ready, a scheduled and a failed job; 'cellar' paused."""
    sql("SELECT pq_put('orchard', '{\"kind\": \"Cox\"}')")
    sql("SELECT pq_put('orchard', '{\"kind\": \"Fuji\"}', '1h')")
    failed, = sql("SELECT pq_put_task('orchard', 'orchard.rot', '[\"Bramley\"]', external => true)")[0]
    conn_rows = sql("""WITH j AS (SELECT id FROM pq_get('orchard', functions => ARRAY['orchard.rot']))
                       SELECT pq_task_failed(id, 'P0001', 'rotten <Bramley>') FROM j""")
    assert conn_rows == [("failed",)]
    sql("SELECT pq_put('cellar', '{}')")
    sql("SELECT pq_pause('cellar')")
    return failed


@needs_cli
def test_metrics_parse_as_prometheus_text(server, sql):
    fill(sql)
    text = urllib.request.urlopen(server + "/metrics").read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("pq_jobs_ready", "pq_jobs_scheduled", "pq_jobs_in_flight", "pq_oldest_ready_seconds",
                 "pq_paused"):
        assert families[name].type == "gauge", name
    value = {(s.name, s.labels.get("queue"), s.labels.get("outcome")): s.value
             for f in families.values() for s in f.samples}
    assert value[("pq_jobs_ready", "orchard", None)] == 1
    assert value[("pq_jobs_scheduled", "orchard", None)] == 1
    assert value[("pq_paused", "cellar", None)] == 1
    assert value[("pq_paused", "orchard", None)] == 0
    assert all(s.labels["table"] == "queue" for f in families.values() for s in f.samples)
    if "pq_puts" in families:  # counters: the test cluster preloads pq
        assert families["pq_puts"].type == "counter"
        assert value[("pq_puts_total", "orchard", None)] == 3
        assert value[("pq_tasks_total", "orchard", "failed")] == 1
        assert families["pq_wake_seconds"].type == "histogram"


@needs_cli
def test_actions_need_the_token_and_refuse_other_origins(server, sql):
    fill(sql)
    form = urllib.parse.urlencode({"token": "wrong", "action": "resume", "queue": "cellar"}).encode()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/act", data=form)
    assert e.value.code == 403
    form = urllib.parse.urlencode({"token": TOKEN, "action": "resume", "queue": "cellar"}).encode()
    forged = urllib.request.Request(server + "/act", data=form, headers={"Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(forged)
    assert e.value.code == 403
    assert sql("SELECT paused FROM pq_stats WHERE queue = 'cellar'") == [(True,)]
    response = urllib.request.urlopen(server + "/")
    page = response.read().decode()
    assert TOKEN not in page
    assert "rotten" not in page and "<Bramley>" not in page
    # Never framed (clickjacking), never cached; another Host (DNS rebinding) is refused.
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    rebound = urllib.request.Request(server + "/", headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(rebound)
    assert e.value.code == 421
    # A script may act with the token itself.
    ok = urllib.request.urlopen(server + "/act", data=form)
    assert ok.status == 200
    assert sql("SELECT paused FROM pq_stats WHERE queue = 'cellar'") == [(False,)]
    sql("SELECT pq_pause('cellar')")


@needs_cli
def test_queues_named_dot_and_dot_dot_have_pages(server, sql):
    # A browser resolves '.' and '..' (and %2E) as path steps: their pages are /queue?name=...
    import html
    import re
    for name, kind in ((".", "Dot"), ("..", "DotDot")):
        sql(f"SELECT pq_put('{name}', '{{\"kind\": \"{kind}\"}}')")
    index = urllib.request.urlopen(server + "/").read().decode()
    for name, kind in ((".", "Dot"), ("..", "DotDot")):
        href, = re.findall(r'<tr data-queue="%s"><td><a href="([^"]+)"' % re.escape(name), index)
        url = urllib.parse.urljoin(server + "/", html.unescape(href))
        assert url == server + "/queue?name=" + "%2E" * len(name), url
        page = urllib.request.urlopen(url).read().decode()
        assert kind in page, page[:500]
        failed_href, = re.findall(r'id=show-failed href="([^"]+)"', page)
        failed = urllib.parse.urljoin(url, html.unescape(failed_href))
        assert urllib.request.urlopen(failed).status == 200
        # An action on it comes back to its page.
        form = urllib.parse.urlencode({"token": TOKEN, "action": "pause", "queue": name}).encode()
        done = urllib.request.urlopen(server + "/act", data=form)
        assert done.url == url and kind in done.read().decode()
    assert sql("SELECT count(*) FROM pq_stats WHERE queue IN ('.', '..') AND paused") == [(2,)]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/queue")
    assert e.value.code == 400


@needs_cli
def test_the_dashboard_in_chromium_requeues_a_failed_job(server, sql):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    failed = fill(sql)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,800"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(server + "/login?token=" + TOKEN)
        rows = {r.get_attribute("data-queue"): r for r in browser.find_elements(By.CSS_SELECTOR, "#queues tr[data-queue]")}
        assert set(rows) == {"orchard", "cellar"}
        assert "paused" in rows["cellar"].text
        assert rows["orchard"].find_element(By.CSS_SELECTOR, "td.ready").text == "1"
        os.makedirs(ARTIFACTS, exist_ok=True)
        browser.save_screenshot(os.path.join(ARTIFACTS, "dashboard.png"))
        assert TOKEN not in browser.page_source, "pages carry a form nonce, never the token"
        browser.find_element(By.LINK_TEXT, "orchard").click()
        browser.find_element(By.ID, "show-failed").click()
        failed_row = browser.find_element(By.ID, f"job-{failed}")
        assert "rotten <Bramley>" in failed_row.text
        browser.save_screenshot(os.path.join(ARTIFACTS, "dashboard-queue.png"))
        browser.find_element(By.ID, f"requeue-{failed}").click()
        # The page we click from is already under /queues/orchard, so its URL tells nothing:
        # wait for the POST's effect in the table, then for the page it redirects to.
        requeued = lambda: sql("SELECT dequeued_at IS NULL, pq_status(id) FROM queue WHERE id = %s", failed)
        eventually(lambda: requeued() == [(True, "ready")])
        # Back in the ready list, with a cancel button; and the cellar resumes from the front page.
        eventually(lambda: browser.find_elements(By.ID, f"cancel-{failed}"))
        assert "/queues/orchard" in browser.current_url, browser.page_source[:500]
        browser.get(server + "/")
        browser.find_element(By.ID, "resume-cellar").click()
        eventually(lambda: sql("SELECT paused FROM pq_stats WHERE queue = 'cellar'") == [(False,)])
    finally:
        browser.quit()
