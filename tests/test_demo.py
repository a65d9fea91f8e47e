"""The demo, driven over HTTP by a real client against a real server process."""

import http.cookiejar
import re
import subprocess
import sys
import urllib.request

import pytest


@pytest.fixture
def demo_url(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastsession", "demo", "--port", "0", "--directory", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,  # the installed package, not a source tree in the cwd
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def visits(opener, url):
    with opener.open(url) as response:
        page = response.read().decode()
    return int(re.search(r'id="visits">(\d+)<', page).group(1))


def test_demo_counts_visits_and_logs_out(demo_url):
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    assert [visits(browser, demo_url) for _ in range(3)] == [1, 2, 3]
    (cookie,) = list(jar)
    assert cookie.name == "SID" and len(cookie.value) == 43
    assert visits(browser, demo_url + "logout") == 1  # redirected to / with a fresh session
    assert [c.value for c in jar] != [cookie.value]

    stranger = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    assert visits(stranger, demo_url) == 1


def test_demo_404_sets_no_cookie(demo_url):
    request = urllib.request.Request(demo_url + "favicon.ico")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 404
    assert info.value.headers.get_all("Set-Cookie") is None
