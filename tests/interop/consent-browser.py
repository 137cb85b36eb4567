#!/usr/bin/env python3
"""A headless "browser" for logins through the authorization-server facade:
follows the authorization URL (keeping cookies), and when a page is the
facade's consent form, presses Allow (or Deny with CONSENT_DECISION=deny),
then follows on through the provider's login to the client's callback. Set
as $BROWSER. Records each URL in $BROWSER_LOG when set, and each consent
page it answered in $CONSENT_LOG when set. Standard library only.
"""
import http.cookiejar
import os
import re
import sys
import time
import urllib.parse
import urllib.request

url = sys.argv[1]
if os.environ.get("BROWSER_LOG"):
    with open(os.environ["BROWSER_LOG"], "a") as f:
        f.write(url + "\n")

jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
resp = opener.open(url, timeout=30)
body = resp.read().decode("utf-8", "replace")
form = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', body) or re.search(
    r'<form[^>]*action="([^"]+)"[^>]*method="post"', body
)
if form and 'name="csrf"' in body:
    def field(name):
        m = re.search(r'name="%s"[^>]*value="([^"]*)"' % name, body)
        if not m:
            sys.exit("consent page without %s" % name)
        return m.group(1)

    if os.environ.get("CONSENT_LOG"):
        with open(os.environ["CONSENT_LOG"], "a") as f:
            f.write(resp.url + "\n")
    # The facade takes an approval only once its page has been up for a
    # moment (against double-clickjacking), as long as a person reads it.
    time.sleep(1.0)
    data = urllib.parse.urlencode({
        "csrf": field("csrf"),
        "request": field("request"),
        "decision": os.environ.get("CONSENT_DECISION", "allow"),
    }).encode()
    action = urllib.parse.urljoin(resp.url, form.group(1).replace("&amp;", "&"))
    opener.open(action, data=data, timeout=30).read()
