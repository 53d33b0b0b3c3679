"""The page's JavaScript unit tests (tests/js/*.test.mjs), run by Node's built-in test runner."""

import re
import shutil
import subprocess
from urllib.parse import urljoin

import httpx

from tests.support import harness

JS_TESTS = sorted((harness.ROOT / "tests" / "js").glob("*.test.mjs"))


def test_the_pages_javascript_unit_tests_pass():
    node = shutil.which("node")
    harness.require(node is not None, "no node (apt-get install nodejs)")
    assert JS_TESTS, "no tests/js/*.test.mjs found"
    result = subprocess.run(
        [node, "--test", *map(str, JS_TESTS)], cwd=harness.ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_served_page_imports_its_modules_by_hashed_name(game):
    """collectstatic rewrites `import ... from "./feed.js"` so both files are cached for good."""
    page = httpx.get(game.url + "/", timeout=10).text
    game_js = re.search(r'<script type="module" src="([^"]+)"', page).group(1)
    source = httpx.get(game.url + game_js, timeout=10)
    assert source.status_code == 200, game_js
    imports = re.findall(r'^import .* from "([^"]+)";', source.text, re.MULTILINE)
    assert imports and all(re.fullmatch(r"\./\w+\.[0-9a-f]{12}\.js", url) for url in imports), imports
    for url in imports:
        module = httpx.get(urljoin(game.url + game_js, url), timeout=10)
        assert module.status_code == 200, url
        assert "javascript" in module.headers["content-type"]
        assert "immutable" in module.headers["cache-control"], module.headers  # whitenoise: hashed name
