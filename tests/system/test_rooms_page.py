"""Rooms in a real Chromium: create and join from the public page, play apart, copy the link, scan
the QR code, and the room's refusals (full, locked, gone), against a real daphne and Redis.

Screenshots land in test-artifacts/ (not committed): look at them.
"""

import io

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.support import browser, harness
from tests.support.browser import LIVE, virus_ids, wait_ids, wait_open

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ARTIFACTS = harness.ROOT / "test-artifacts"
# A refused page that reconnected would do so within a second or two (reconnect.js's first waits).
NO_RECONNECT_MS = 4000


@pytest.fixture(scope="module")
def chromium():
    """One browser for this module (closed before other modules' async tests run)."""
    with browser.chromium() as chromium:
        yield chromium


@pytest.fixture
def window(chromium):
    """`window(server, path)`: a new browser window (its own cookies) on a page of `server`."""
    contexts = []

    def open_one(server, path="/", *, viewport=None, live=True, **context_options):
        context = chromium.new_context(viewport=viewport or {"width": 1280, "height": 800}, **context_options)
        contexts.append(context)
        page = context.new_page()
        page.goto(server.url + path)
        if live:
            wait_open(page)
        return page

    yield open_one
    for context in contexts:
        context.close()


def create_room(page, name: str) -> str:
    """Create a room from the public page's button; return its code once its page is live."""
    page.fill("#create-room-name", name)
    page.click("#create-room")
    page.wait_for_url("**/r/*/", timeout=LIVE)
    wait_open(page)
    return page.text_content("#room-code").strip()


def room_ids(server, code: str) -> set[str]:
    return {v["id"] for v in server.api().get(f"/api/rooms/{code}/viruses/").json()["viruses"]}


def add_one(page, server, code: str | None = None) -> str:
    """Press + and return the id of the virus it made (in the room of `code`, else the public world)."""
    before = room_ids(server, code) if code else {v["id"] for v in server.api().list()["viruses"]}
    page.click("#add-virus")
    page.wait_for_function(
        "n => document.querySelectorAll('#playground [data-virus-id]').length > n", arg=len(before)
    )
    (made,) = virus_ids(page) - before
    return made


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def decode_qr(png: bytes) -> list[str]:
    return [code.text for code in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))]


def test_a_room_made_on_the_public_page_is_joined_by_code_and_by_link_and_played_apart(window, game):
    host = window(game)
    code = create_room(host, "Class 4B")
    assert host.text_content("h1") == "Class 4B"
    link = host.get_attribute("#room-card", "data-link")
    assert link == f"{game.url}/r/{code}/"

    guest = window(game)
    guest.fill("#join-room-code", f"  {code.lower()[:3]} {code.lower()[3:]} ")  # any case, spaces
    guest.click("#join-room")
    guest.wait_for_url(f"**/r/{code}/", timeout=LIVE)
    wait_open(guest)
    public = window(game)

    made = add_one(host, game, code)
    wait_ids(guest, {made})
    guest.click(f'[data-virus-id="{made}"]')
    wait_ids(host, set())
    again = add_one(guest, game, code)
    wait_ids(host, {again})

    guest.goto(link)  # the copied link, a second time in
    wait_open(guest)
    wait_ids(guest, {again})

    # The fence: a virus of the public world reaches the public page, which shows it alone;
    # one more in the room reaches the room's pages, which never show the public one.
    fence = add_one(public, game)
    wait_ids(public, {fence})
    last = add_one(host, game, code)
    wait_ids(guest, {again, last})
    wait_ids(host, {again, last})
    screenshot(host, "room-host")


def test_the_qr_code_the_room_page_shows_scans_to_the_rooms_absolute_link(window, game):
    host = window(game)
    code = create_room(host, "Projector")
    for name, viewport in (
        ("desktop", {"width": 1920, "height": 1080}),
        ("phone", {"width": 390, "height": 844}),
    ):
        page = window(game, f"/r/{code.lower()}/", viewport=viewport)
        assert decode_qr(page.locator("#room-card .room-qr").screenshot()) == [f"{game.url}/r/{code}/"], name
        screenshot(page, f"room-{name}")
    # On the phone (the host's, with the lock too), the code, the QR, the dish and + fit the first screen.
    host.set_viewport_size({"width": 390, "height": 844})
    boxes = {
        part: host.locator(part).bounding_box()
        for part in ("#room-code", ".room-qr", "#playground", "#add-virus")
    }
    assert all(box["y"] >= 0 and box["y"] + box["height"] <= 844 for box in boxes.values()), boxes
    assert boxes["#playground"]["height"] >= 240 and host.is_visible("#room-lock")


def test_copy_link_puts_the_absolute_link_in_the_clipboard_with_or_without_the_clipboard_api(window, game):
    host = window(game)
    code = create_room(host, "Copy me")
    link = f"{game.url}/r/{code}/"
    clipboard = {"permissions": ["clipboard-read", "clipboard-write"]}

    page = window(game, f"/r/{code}/", **clipboard)
    page.click("#copy-link")
    page.wait_for_function(
        "() => document.querySelector('#copy-link').textContent === 'Copied'", timeout=LIVE
    )
    assert page.evaluate("navigator.clipboard.readText()") == link

    old_browser = window(game, f"/r/{code}/", live=False, **clipboard)
    old_browser.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined})"
    )
    old_browser.reload()
    wait_open(old_browser)
    assert old_browser.evaluate("navigator.clipboard") is None
    reader = old_browser.context.new_page()  # same context: same clipboard, with the API
    reader.goto(game.url + "/")
    reader.evaluate("navigator.clipboard.writeText('before')")
    old_browser.click("#copy-link")
    old_browser.wait_for_function("() => document.querySelector('#copy-link').textContent === 'Copied'")
    assert reader.evaluate("navigator.clipboard.readText()") == link


def test_a_full_room_says_so_and_does_not_reconnect(window, start_game):
    game = start_game(VIRUS_ROOM_MAX_PLAYERS="1")
    host = window(game)
    code = create_room(host, "Tiny")
    late = window(game, f"/r/{code}/", live=False)
    late.wait_for_selector("#room-refusal:not([hidden])", timeout=LIVE)
    assert late.text_content("#room-refusal .room-refusal-title") == "This room is full"
    assert late.get_attribute("#connection-status", "data-state") == "closed"
    assert late.is_disabled("#add-virus")
    with pytest.raises(PlaywrightTimeout):
        late.wait_for_event("websocket", timeout=NO_RECONNECT_MS)
    screenshot(late, "room-full")


def test_the_host_locks_the_room_its_players_see_it_a_stranger_is_told_and_a_removed_room_is_gone(
    window, game
):
    host = window(game)
    code = create_room(host, "Locked")
    member = window(game, f"/r/{code}/")
    assert not member.is_visible("#room-locked") and not member.is_visible("#room-lock")
    host.click("#room-lock")
    host.wait_for_selector('#room-lock[aria-pressed="true"]', timeout=LIVE)
    assert game.api().get(f"/api/rooms/{code}/").json()["locked"] is True
    assert host.is_visible("#room-locked")
    member.wait_for_selector("#room-locked", state="visible", timeout=LIVE)  # pushed live

    stranger = window(game, f"/r/{code}/", live=False)
    stranger.wait_for_selector("#room-refusal:not([hidden])", timeout=LIVE)
    assert stranger.text_content("#room-refusal .room-refusal-title") == "This room is locked"
    assert stranger.is_visible("#room-locked") and not stranger.is_visible("#room-lock")

    host.click("#room-lock")  # unlocked: the stranger gets in on a reload
    host.wait_for_selector('#room-lock[aria-pressed="false"]', timeout=LIVE)
    stranger.reload()
    wait_open(stranger)

    game.manage("shell", "-c", f"from viruses.models import Room; Room.objects.get(code='{code}').delete()")
    stranger.evaluate("virusGame.reconnect()")
    stranger.wait_for_selector("#room-refusal:not([hidden])", timeout=LIVE)
    assert stranger.text_content("#room-refusal .room-refusal-title") == "This room no longer exists"


def test_joining_with_an_unknown_or_malformed_code_says_so_inline_and_stays(window, game):
    page = window(game)
    asked = []
    page.on("request", lambda request: "/api/rooms/" in request.url and asked.append(request.url))
    page.fill("#join-room-code", "K7QM0")  # 0 is not in the alphabet: not even asked
    page.click("#join-room")
    page.wait_for_function("() => document.querySelector('#join-room-error').textContent !== ''")
    assert "without 0, O, 1, I or L" in page.text_content("#join-room-error")
    assert asked == []
    page.fill("#join-room-code", "zzzzz")
    page.click("#join-room")
    page.wait_for_function("() => document.querySelector('#join-room-error').textContent.includes('ZZZZZ')")
    assert (
        page.text_content("#join-room-error")
        == "No room has the code ZZZZZ. Check it with whoever shared it."
    )
    assert page.url == game.url + "/" and len(asked) == 1
    screenshot(page, "public-join-unknown")


def test_a_players_rank_in_a_room_is_the_rooms_even_off_its_top_ten(window, game):
    host = window(game)
    code = create_room(host, "Ranks")
    game.manage("spawn_virus", "--room", code, "--count", "21")
    ahead = [game.api() for _ in range(10)]
    viruses = sorted(room_ids(game, code))
    for i, player in enumerate(ahead):  # ten players with two kills each
        for virus_id in viruses[2 * i : 2 * i + 2]:
            assert (
                player.client.delete(
                    f"/api/rooms/{code}/viruses/{virus_id}/", headers=player.headers()
                ).status_code
                == 204
            )
    (last,) = viruses[20:]
    wait_ids(host, {last})
    host.click(f'[data-virus-id="{last}"]')
    host.wait_for_function("() => document.querySelector('#player-rank').textContent === '#11'", timeout=LIVE)
    assert host.text_content("#leaderboard-me") == "You: #11, 1 squashed"
