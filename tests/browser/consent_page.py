#!/usr/bin/env python3
"""The consent page in a real browser (headless Chromium through WebDriver).

Installs what it needs on a fresh machine: Debian's `chromium` and
`chromium-driver` (apt-get, as root or through sudo) and `selenium` from PyPI
in a virtualenv at target/browser-venv. Then:

1. starts three loopback HTTP servers: this MCP server's stand-in (serves the
   consent page with the headers `page_headers` produced, sets the binding
   cookie, checks the posted form), an upstream provider that approves at
   once, and the client's redirect URI;
2. runs mcp-auth-proxy's `consent_page` test `browser_fixture` (built as the test command
   builds it: `cargo test --workspace --all-features`)
   with CONSENT_BROWSER_DIR=target/browser, which writes the pages
   (`render_consent`, `render_error`) and their headers there;
3. checks in Chromium, at a phone size (390x844) and a desktop size
   (1280x800): the style sheet is applied under the CSP (its hash is right)
   with no CSP violation, both buttons are visible without scrolling and
   reached by Tab (Deny, then Allow) with a visible focus ring, text
   contrast is at least 4.5:1 in light and dark mode, nothing overflows
   sideways; hostile client text (opened without any CSP, so escaping alone
   is tested) shows as text: no <b> element, no script ran, no event
   handler attribute; the form posts its hidden `csrf` and `request` fields
   and the cookie; Allow (by keyboard) reaches the client's callback through
   the provider, Deny reaches it with error=access_denied; Allow takes no
   click for the page's first second, nor (with a mouse) before the pointer
   has been on the page for a second (double-clickjacking); and, without the
   provider's or the client's origin in form-action, Chromium stops the
   redirect chain (why `page_headers` takes them);
4. saves docs/img/consent-desktop.png and docs/img/consent-phone.png, and
   more views (dark mode, focus ring, hostile text, error page, a local app)
   under target/browser/.
5. then the page as mcp-auth-server itself serves it (the binary the test
   command built), behind its Host/Origin guard, in front of a GitHub-style
   stand-in provider: a client registered dynamically is denied (back with
   access_denied), then allowed (back with a code, exchanged at the token
   endpoint for a token the MCP endpoint accepts), and an approval by keyboard
   as the page appears is refused. A browser posts the form
   with the Origin the page's referrer policy allows, so only this shows
   that a user gets past the page.

Options: --manifest-path PATH builds the fixture from another Cargo manifest
(default: the workspace); MCP_AUTH_SERVER_BIN names the server binary step 5
runs. Ends with 'N passed, N failed'; exits 1 on any failure.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = ROOT / "target" / "browser-venv"
OUT = ROOT / "target" / "browser"
IMG = ROOT / "docs" / "img"
PHONE = (390, 844)
DESKTOP = (1280, 800)


def ensure_tools():
    """Chromium and its driver from Debian, selenium in the virtualenv; then
    runs this script again inside the virtualenv."""
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            sudo + ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver", "fonts-dejavu-core"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    python = VENV / "bin" / "python"
    if pathlib.Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists() or subprocess.run([python, "-c", "import selenium"], capture_output=True).returncode:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run(
            [VENV / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", "selenium>=4.20,<5"],
            check=True,
        )
    os.execv(python, [str(python), __file__, *sys.argv[1:]])


class Servers:
    """The MCP server's stand-in, the upstream provider and the client, each
    on its own loopback port (so each is its own origin)."""

    def __init__(self):
        self.hits = []  # (role, method, path) in arrival order
        self.posts = []  # the parsed form of each POST, with its cookie
        self.fixture = {}
        self.lock = threading.Lock()
        self.servers = {}
        for role in ("proxy", "upstream", "client", "github"):
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler(role))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers[role] = server

    def origin(self, role):
        return f"http://127.0.0.1:{self.servers[role].server_address[1]}"

    def stop(self):
        for server in self.servers.values():
            server.shutdown()
            server.server_close()

    def hit_roles(self, path_prefix):
        with self.lock:
            return [role for role, _, path in self.hits if path.startswith(path_prefix)]

    def reset(self):
        with self.lock:
            self.hits.clear()
            self.posts.clear()

    def handler(self, role):
        servers = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, body=b"", headers=None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def redirect(self, status, location):
                self.send(status, headers={"Location": location})

            def do_GET(self):
                with servers.lock:
                    servers.hits.append((role, "GET", self.path))
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                state = query.get("state", [""])[0]
                if role == "proxy":
                    parts = url.path.strip("/").split("/")
                    if url.path == "/callback":
                        # The provider's answer: this server sends its own code on.
                        return self.redirect(302, f"{servers.origin('client')}/callback?code=ours&state={state}")
                    if len(parts) == 1 and parts[0] in ("full", "upstream-only", "self-only", "error"):
                        page = "error.html" if parts[0] == "error" else "consent.html"
                        variant = parts[0] if parts[0] in servers.fixture["headers"] else "full"
                        headers = dict(servers.fixture["headers"][variant])
                        headers["Set-Cookie"] = servers.fixture["set_cookie"]
                        return self.send(200, (OUT / page).read_bytes(), headers)
                    return self.send(404)
                if role == "upstream" and url.path == "/authorize":
                    # A user already signed in upstream: the provider answers at once.
                    return self.redirect(302, f"{servers.origin('proxy')}/callback?code=upstream&state={state}")
                if role == "github" and url.path == "/authorize":
                    # A GitHub-style provider for the real server: signed in, approves at once.
                    back = query.get("redirect_uri", [""])[0]
                    return self.redirect(302, f"{back}?code=gh-code&state={urllib.parse.quote(state)}")
                if role == "github" and url.path == "/user":
                    if self.headers.get("Authorization") != "Bearer gh-access":
                        return self.send(401)
                    body = json.dumps({"id": 583231, "login": "octocat"}).encode()
                    return self.send(200, body, {"Content-Type": "application/json"})
                if role == "client" and url.path == "/callback":
                    return self.send(200, b"<!DOCTYPE html><title>client</title><p>back at the client", {"Content-Type": "text/html"})
                self.send(404)

            def do_POST(self):
                with servers.lock:
                    servers.hits.append((role, "POST", self.path))
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                form = {key: values[0] for key, values in form.items()}
                form["cookie"] = self.headers.get("Cookie", "")
                with servers.lock:
                    servers.posts.append(form)
                if role == "github" and self.path == "/token":
                    if form.get("code") != "gh-code":
                        return self.send(400, b'{"error":"invalid_grant"}', {"Content-Type": "application/json"})
                    body = json.dumps({"access_token": "gh-access", "token_type": "bearer", "scope": "read:user"})
                    return self.send(200, body.encode(), {"Content-Type": "application/json"})
                parts = self.path.strip("/").split("/")
                if role != "proxy" or len(parts) != 2 or parts[1] != "decide":
                    return self.send(404)
                fixture = servers.fixture
                binding = f"mcp-consent={fixture['binding']}"
                if form.get("csrf") != fixture["csrf"] or form.get("request") != fixture["request"] or binding not in form["cookie"]:
                    form["answer"] = 403
                    return self.send(403, b"forbidden")
                form["answer"] = 303
                if form.get("decision") == "allow":
                    return self.redirect(303, f"{servers.origin('upstream')}/authorize?state={parts[0]}")
                self.redirect(303, f"{servers.origin('client')}/callback?error=access_denied&state={parts[0]}")

        return Handler


def write_fixture(servers, manifest_path):
    env = dict(
        os.environ,
        CONSENT_BROWSER_DIR=str(OUT),
        CONSENT_BROWSER_UPSTREAM=f"{servers.origin('upstream')}/authorize",
        CONSENT_BROWSER_CLIENT=f"{servers.origin('client')}/callback",
    )
    # The test command's own selection and features (`cargo test --workspace --all-features`),
    # not `-p mcp-auth-proxy`: dependency features are unified over the packages selected, so
    # `-p` would build a second copy of the dependency graph after tests/run-all.sh has built
    # this one (about a minute on two cores), where this way the fixture test is already built.
    # Only mcp-auth-proxy has a test target named consent_page.
    command = ["cargo", "test", "--quiet", "--workspace", "--all-features", "--test", "consent_page"]
    if manifest_path:
        command += ["--manifest-path", manifest_path]
    command += ["browser_fixture", "--", "--exact", "--nocapture"]
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    servers.fixture = json.loads((OUT / "fixture.json").read_text())


def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # A mouse, as on a desktop (headless Chromium has none: `(hover: hover)` would not match,
    # and the consent page arms Allow by the pointer only with one).
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--hide-scrollbars", "--no-first-run", "--window-size=1280,800",
                     "--blink-settings=primaryHoverType=2,availableHoverTypes=2,"
                     "primaryPointerType=4,availablePointerTypes=4"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))


def viewport(driver, size, dark=False):
    width, height = size
    phone = size == PHONE
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 2 if phone else 1, "mobile": phone,
    })
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}],
    })


# Text contrast of every visible text element, against the first opaque
# background up its ancestors (WCAG relative luminance).
CONTRAST_JS = """
const parse = c => (c.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = el => {
  for (; el; el = el.parentElement) {
    const c = parse(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const out = [];
for (const el of document.querySelectorAll('h1, h2, p, li, dt, dd, summary, code, strong, span, button, bdi')) {
  if (!el.offsetParent || !el.textContent.trim()) continue;
  const fg = lum(parse(getComputedStyle(el).color)), bg = lum(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  out.push([el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''), Math.round(ratio * 100) / 100]);
}
return out;
"""


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name} {detail}")


def allow_armed(driver):
    """Whether Allow takes clicks yet: its style sheet keeps it from them for
    the page's first second, with a mouse for the pointer's first second on
    the page (against double-clickjacking)."""
    return driver.execute_script("""
        const b = document.querySelector('button.allow');
        return !!b && getComputedStyle(b).pointerEvents !== 'none';""")


def wait_armed(driver):
    """Puts the pointer on the page (on its heading, away from the buttons)
    and waits for Allow to arm."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
    return wait_until(lambda: allow_armed(driver), timeout=5)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def run(manifest_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    OUT.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    servers = Servers()
    checks = Checks()
    driver = None
    try:
        write_fixture(servers, manifest_path)
        fixture = servers.fixture
        driver = start_browser()
        proxy = servers.origin("proxy")
        client_callback = f"{servers.origin('client')}/callback"

        # With a mouse, Allow arms a second after the pointer reaches the page, not before: a page
        # opened behind another window (which the first click of a double-click closes) is not
        # armed for the second click, however long it has been open. The pointer has not been on
        # any page yet in this browser.
        viewport(driver, DESKTOP)
        driver.get(f"{proxy}/full/")
        time.sleep(1.5)
        state = """
            const s = getComputedStyle(document.querySelector('button.allow'));
            return [matchMedia('(hover: hover)').matches, s.animationPlayState, s.pointerEvents];"""
        unhovered = driver.execute_script(state)
        checks.check("pointer guard: 1.5 s after load, the pointer never on the page, Allow takes no click",
                     unhovered == [True, "paused", "none"], unhovered)
        ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
        hovered = driver.execute_script(state)
        armed = wait_until(lambda: allow_armed(driver), timeout=5)
        checks.check("pointer guard: once the pointer is on the page, Allow arms a second later",
                     hovered == [True, "running", "none"] and armed, hovered)

        for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            for dark in (False, True):
                mode = f"{name}{' dark' if dark else ''}"
                viewport(driver, size, dark)
                driver.get(f"{proxy}/full/")
                driver.get_log("browser")  # drop entries from earlier pages
                driver.refresh()
                csp_errors = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
                checks.check(f"{mode}: no CSP violation", not csp_errors, csp_errors)
                checks.check(f"{mode}: Allow takes clicks within a few seconds", wait_armed(driver))
                allow_bg = driver.execute_script(
                    "return getComputedStyle(document.querySelector('button.allow')).backgroundColor")
                expected_bg = "rgb(143, 176, 255)" if dark else "rgb(29, 78, 216)"
                checks.check(f"{mode}: style sheet applied under the CSP", allow_bg == expected_bg, allow_bg)
                in_view = driver.execute_script("""
                    return [...document.querySelectorAll('button')].map(b => {
                      const r = b.getBoundingClientRect();
                      return [b.value, r.width > 80 && r.height >= 44 && r.top >= 0 && r.bottom <= innerHeight];
                    });""")
                checks.check(f"{mode}: Deny and Allow visible without scrolling, at least 44px tall",
                             in_view == [["deny", True], ["allow", True]], in_view)
                overflow = driver.execute_script("return document.documentElement.scrollWidth - innerWidth")
                checks.check(f"{mode}: nothing overflows sideways", overflow <= 0, overflow)
                host = driver.find_element(By.CSS_SELECTOR, ".destination .host")
                checks.check(f"{mode}: redirect host shown", host.is_displayed() and host.text == "claude.ai", host.text)
                low = [c for c in driver.execute_script(CONTRAST_JS) if c[1] < 4.5]
                checks.check(f"{mode}: text contrast at least 4.5:1", not low, low)
                suffix = "-dark" if dark else ""
                target = (IMG if not dark else OUT) / f"consent-{name}{suffix}.png"
                driver.save_screenshot(str(target))

        # Double-clickjacking: another site opens this page on the first click of a double-click,
        # and the second lands where Allow is. Allow takes no click for the page's first second;
        # a click then lands on nothing. Tried twice, in case the first was not quick enough to say.
        viewport(driver, DESKTOP)
        early = None
        for _ in range(2):
            driver.get(f"{proxy}/full/")
            servers.reset()
            allow = driver.find_element(By.CSS_SELECTOR, "button.allow")
            ActionChains(driver).move_to_element(allow).click().perform()
            early = driver.execute_script("""
                const b = document.querySelector('button.allow');
                return [performance.now(), getComputedStyle(b).pointerEvents];""")
            if early[0] < 900:
                break
        time.sleep(0.5)
        checks.check("double-click guard: a click on Allow as the page appears does nothing",
                     early[0] < 900 and early[1] == "none" and not servers.posts
                     and driver.current_url.startswith(proxy), (early, servers.posts, driver.current_url))
        if not driver.current_url.startswith(proxy):  # the early click went through: the page again
            driver.get(f"{proxy}/full/")
            servers.reset()
            allow = driver.find_element(By.CSS_SELECTOR, "button.allow")
        hover = driver.execute_script("""
            return [matchMedia('(hover: hover)').matches,
                    getComputedStyle(document.querySelector('button.allow')).animationPlayState];""")
        checks.check("double-click guard: with a mouse, Allow arms while the pointer is on the page",
                     hover == [True, "running"], hover)
        armed = wait_armed(driver)
        armed_at = driver.execute_script("return performance.now()")
        checks.check("double-click guard: Allow takes clicks a second after the page appears",
                     armed and armed_at >= 900, armed_at)
        ActionChains(driver).move_to_element(allow).click().perform()
        arrived = wait_until(lambda: driver.current_url.startswith(client_callback))
        checks.check("double-click guard: then a click on Allow goes through",
                     arrived and len(servers.posts) == 1 and servers.posts[0].get("decision") == "allow",
                     (driver.current_url, servers.posts))

        # Keyboard: Tab walks to the disclosure, Deny, then Allow, each with a visible ring.
        viewport(driver, DESKTOP)
        driver.get(f"{proxy}/full/")
        order = []
        for _ in range(4):
            ActionChains(driver).send_keys(Keys.TAB).perform()
            order.append(driver.execute_script("""
                const el = document.activeElement, s = getComputedStyle(el);
                return [el.tagName.toLowerCase(), el.value || el.textContent.trim(),
                        s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2];"""))
            if order[-1][1] == "allow":
                break
        stops = [stop[1] for stop in order]
        checks.check("keyboard: Tab reaches Deny, then Allow", stops[-2:] == ["deny", "allow"], order)
        checks.check("keyboard: every stop shows a focus ring", all(stop[2] for stop in order), order)
        driver.save_screenshot(str(OUT / "consent-focus-allow.png"))

        # The form: hidden fields as rendered, then Allow pressed with Enter.
        hidden = driver.execute_script("""
            return [...document.querySelectorAll('form input[type=hidden]')].map(i => [i.name, i.value]);""")
        checks.check("form: hidden csrf and request fields",
                     hidden == [["csrf", fixture["csrf"]], ["request", fixture["request"]]], hidden)
        form = driver.find_element(By.TAG_NAME, "form")
        checks.check("form: method post", form.get_attribute("method") == "post")
        servers.reset()
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        arrived = wait_until(lambda: driver.current_url.startswith(client_callback))
        checks.check("allow (keyboard): the client's callback gets the code through the provider",
                     arrived and "code=ours" in driver.current_url, driver.current_url)
        posted = servers.posts[0] if servers.posts else {}
        checks.check("allow: the POST carried csrf, request, decision and the binding cookie",
                     len(servers.posts) == 1 and posted.get("answer") == 303 and posted.get("csrf") == fixture["csrf"]
                     and posted.get("request") == fixture["request"] and posted.get("decision") == "allow"
                     and fixture["binding"] in posted.get("cookie", ""),
                     servers.posts)
        checks.check("allow: went through the provider and this server's callback",
                     servers.hit_roles("/authorize") == ["upstream"] and "proxy" in servers.hit_roles("/callback"),
                     servers.hits)

        # Deny, by mouse: back at the client with an error, the provider never asked.
        driver.get(f"{proxy}/full/")
        servers.reset()
        driver.find_element(By.CSS_SELECTOR, "button.deny").click()
        arrived = wait_until(lambda: driver.current_url.startswith(client_callback))
        checks.check("deny: the client's callback gets error=access_denied",
                     arrived and "error=access_denied" in driver.current_url, driver.current_url)
        checks.check("deny: the provider is never reached", not servers.hit_roles("/authorize"), servers.hits)

        # Without the client's origin in form-action, Chromium stops the chain at its last hop;
        # without the provider's, at the first.
        for variant, reaches_upstream in (("upstream-only", True), ("self-only", False)):
            driver.get(f"{proxy}/{variant}/")
            servers.reset()
            wait_armed(driver)
            driver.find_element(By.CSS_SELECTOR, "button.allow").click()
            wait_until(lambda: len(servers.hits) >= (3 if reaches_upstream else 1), timeout=5)
            time.sleep(1)
            accepted = [post.get("answer") for post in servers.posts] == [303]
            client_hit = "client" in servers.hit_roles("/callback")
            upstream_hit = bool(servers.hit_roles("/authorize"))
            checks.check(f"form-action without {'the client' if reaches_upstream else 'the provider'}: "
                         f"the POST is accepted, then Chromium blocks the redirect",
                         accepted and not client_hit and upstream_hit == reaches_upstream,
                         (servers.posts, servers.hits))

        # Hostile client text, opened as a file: no CSP at all, so only escaping protects it.
        viewport(driver, PHONE)
        driver.get((OUT / "hostile.html").as_uri())
        result = driver.execute_script("""
            const handlers = [...document.querySelectorAll('*')].filter(el =>
              [...el.attributes].some(a => a.name.startsWith('on') || a.name === 'autofocus'));
            const lede = document.querySelector('.lede bdi');
            return {
              pwned: window.pwned === undefined ? null : window.pwned,
              injected: document.querySelectorAll('b, script, img, svg').length,
              handlers: handlers.length,
              title: document.querySelector('h1').textContent,
              weight: getComputedStyle(lede).fontWeight,
              text: lede.textContent,
            };""")
        ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
        for _ in range(4):
            ActionChains(driver).send_keys(Keys.TAB).perform()
        checks.check("hostile: no script ran (not even on hover or focus)",
                     result["pwned"] is None and driver.execute_script("return window.pwned") is None, result)
        checks.check("hostile: no injected element or handler", result["injected"] == 0 and result["handlers"] == 0, result)
        checks.check("hostile: the name is text, its <b> not bold",
                     result["text"].startswith("<b>Claude</b><script>") and result["weight"] in ("400", "normal"), result)
        checks.check("hostile: the title shows the tags as typed", "<b>Claude</b>" in result["title"], result["title"])
        host = driver.find_element(By.CSS_SELECTOR, ".destination .host").text
        checks.check("local app: the destination reads 'An application on this computer'",
                     host == "An application on this computer", host)
        driver.find_element(By.TAG_NAME, "summary").click()
        facts = driver.find_element(By.CSS_SELECTOR, "dl.facts")
        hostile_id = 'https://evil.example/" autofocus onfocus="window.pwned=2"><img src=x onerror="window.pwned=3">'
        checks.check("hostile: 'About this app' opens on the metadata host and the client ID, as text",
                     facts.is_displayed() and "metadata document at evil.example" in facts.text
                     and hostile_id in facts.text, facts.text)
        driver.execute_script("document.querySelector('details').scrollIntoView()")
        driver.save_screenshot(str(OUT / "consent-hostile-phone.png"))

        viewport(driver, DESKTOP)
        driver.get(f"{proxy}/error")
        checks.check("error page: no form, one heading",
                     not driver.find_elements(By.TAG_NAME, "form") and len(driver.find_elements(By.TAG_NAME, "h1")) == 1)
        driver.save_screenshot(str(OUT / "error-desktop.png"))

        real_server(driver, servers, checks, manifest_path)
    finally:
        if driver is not None:
            driver.quit()
        servers.stop()

    print(f"screenshots: {IMG / 'consent-desktop.png'}, {IMG / 'consent-phone.png'}; more in {OUT}")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


def server_binary(manifest_path):
    """MCP_AUTH_SERVER_BIN, else mcp-auth-server built as the test command
    builds it (a no-op after the test command; never a stale binary)."""
    if os.environ.get("MCP_AUTH_SERVER_BIN"):
        return pathlib.Path(os.environ["MCP_AUTH_SERVER_BIN"])
    command = ["cargo", "build", "--quiet", "--workspace", "--all-features", "--bin", "mcp-auth-server",
               "--message-format", "json"]
    if manifest_path:
        command += ["--manifest-path", manifest_path]
    out = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") \
                and message["target"]["name"] == "mcp-auth-server":
            return pathlib.Path(message["executable"])
    sys.exit("cargo built no mcp-auth-server binary")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, data, headers=None):
    """A POST outside the browser; the status and the answer (parsed when JSON)."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, kind, body = response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as e:
        status, kind, body = e.code, e.headers.get("Content-Type", ""), e.read()
    return status, json.loads(body) if kind.startswith("application/json") and body else body.decode("utf-8", "replace")


def real_server(driver, servers, checks, manifest_path):
    """The consent page as mcp-auth-server serves it, behind its Host/Origin
    guard: a browser posts the form with the `Origin` the page's referrer
    policy allows (`null` under `no-referrer`, which the guard refuses), so
    only a real browser against the real server shows that a user can get
    past the page. A client registered dynamically logs in through a
    GitHub-style provider: Deny brings it back with access_denied, Allow
    with a code that the token endpoint exchanges for a token the MCP
    endpoint accepts."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    github = servers.origin("github")
    env = dict(
        os.environ,
        RUST_LOG="warn",
        PORT=str(port),
        MCP_AUTH_STRATEGY="oauth2",
        MCP_OAUTH_AUTH_URL=f"{github}/authorize",
        MCP_OAUTH_TOKEN_URL=f"{github}/token",
        MCP_OAUTH_USERINFO_URL=f"{github}/user",
        MCP_OAUTH_CLIENT_ID="browser-test",
        MCP_OAUTH_CLIENT_SECRET="browser-test-secret-0123456789abcdef",
        MCP_OAUTH_SCOPE="read:user",
        MCP_OAUTH_SCOPES_SUPPORTED="mcp:tools",
        MCP_OAUTH_PROVIDER_NAME="GitHub",
    )
    home = OUT / "real-server"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log = open(home / "server.log", "w")
    server = subprocess.Popen([server_binary(manifest_path), "--port", str(port)], env=env, cwd=home,
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        def up():
            try:
                with urllib.request.urlopen(f"{origin}/health", timeout=1):
                    return True
            except OSError:
                return False
        checks.check("real server: starts with the facade", wait_until(up, timeout=30),
                     (home / "server.log").read_text())
        client_callback = f"{servers.origin('client')}/callback"
        status, registered = post(f"{origin}/oauth/register", json.dumps({
            "redirect_uris": [client_callback], "token_endpoint_auth_method": "none",
            "client_name": "Browser test", "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }).encode(), {"Content-Type": "application/json"})
        checks.check("real server: a client registers", status == 201, (status, registered))
        client_id = (registered or {}).get("client_id", "")
        verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()

        def authorize(state):
            return f"{origin}/oauth/authorize?" + urllib.parse.urlencode({
                "response_type": "code", "client_id": client_id, "redirect_uri": client_callback,
                "code_challenge": challenge, "code_challenge_method": "S256", "state": state,
                "scope": "mcp:tools", "resource": f"{origin}/mcp",
            })

        def back_at_client():
            return wait_until(lambda: driver.current_url.startswith(client_callback))

        # An approval sooner than the page can be read (by keyboard, which the style sheet
        # does not hold back): the server refuses it, and nothing goes to the client.
        viewport(driver, DESKTOP)
        quick = None
        for attempt in range(2):
            driver.get(authorize(f"quick-{attempt}"))
            for _ in range(4):
                ActionChains(driver).send_keys(Keys.TAB).perform()
                if driver.execute_script("return document.activeElement.value") == "allow":
                    break
            quick = driver.execute_script("return [performance.now(), document.activeElement.value]")
            if quick[0] < 600:
                break
        # Pressed only when quick enough to say (a slow machine's late press would be taken,
        # and remembered for the checks below); the browser's binding is dropped after.
        refused = False
        if quick[0] < 600:
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            refused = wait_until(lambda: "Approval too quick" in driver.page_source, timeout=5)
        checks.check("real server: an approval by keyboard as the page appears is refused",
                     quick[0] < 600 and quick[1] == "allow" and refused
                     and not driver.current_url.startswith(client_callback),
                     (quick, driver.current_url, driver.page_source[:300]))
        driver.delete_all_cookies()

        # Deny first: an approval is remembered, and the page would not be shown again.
        driver.get(authorize("deny-1"))
        buttons = driver.find_elements(By.CSS_SELECTOR, "button.deny")
        checks.check("real server: the consent page is shown", len(buttons) == 1, driver.page_source[:500])
        if buttons:
            buttons[0].click()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(driver.current_url).query) if back_at_client() else {}
        checks.check("real server: deny reaches the client with access_denied",
                     query.get("error") == ["access_denied"] and query.get("state") == ["deny-1"],
                     (driver.current_url, driver.page_source[:300]))

        driver.get(authorize("allow-1"))
        buttons = driver.find_elements(By.CSS_SELECTOR, "button.allow")
        if buttons and wait_armed(driver):
            buttons[0].click()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(driver.current_url).query) if back_at_client() else {}
        checks.check("real server: allow reaches the client with a code, through the provider",
                     "code" in query and query.get("state") == ["allow-1"],
                     (driver.current_url, driver.page_source[:300]))
        status, tokens = post(f"{origin}/oauth/token", urllib.parse.urlencode({
            "grant_type": "authorization_code", "code": query.get("code", [""])[0],
            "redirect_uri": client_callback, "client_id": client_id, "code_verifier": verifier,
            "resource": f"{origin}/mcp",
        }).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
        checks.check("real server: the code is exchanged for a token", status == 200 and "access_token" in (tokens or {}),
                     (status, tokens))
        status, answer = post(f"{origin}/mcp", json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "browser-test", "version": "1"}},
        }).encode(), {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                      "Authorization": f"Bearer {(tokens or {}).get('access_token', '')}"})
        checks.check("real server: the MCP endpoint accepts the token", status == 200, (status, answer))
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest-path", help="the Cargo manifest to build the fixture from")
    args = parser.parse_args()
    ensure_tools()
    sys.exit(run(args.manifest_path))


if __name__ == "__main__":
    main()
