"""The game page in a real Chromium, against a real daphne, Redis and database.

Screenshots land in test-artifacts/ (not committed): look at them.
"""

import json
import threading
import time

import pytest
from websockets.sync.client import connect as websocket_connect

from tests.support import browser, harness
from tests.support.browser import LIVE, virus_ids, wait_ids, wait_open

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ARTIFACTS = harness.ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def chromium():
    """One browser for this module (closed before other modules' async tests run)."""
    with browser.chromium() as chromium:
        yield chromium


@pytest.fixture
def open_page(chromium, game):
    """Open the game in a new browser window (its own cookies), wait until it is live."""
    contexts = []

    def open_one(viewport=None):
        context = chromium.new_context(viewport=viewport or {"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.goto(game.url + "/")
        wait_open(page)
        return page

    yield open_one
    for context in contexts:
        context.close()


def position(page, virus_id: str) -> tuple[float, float]:
    """The virus's centre as a fraction of the playground's size."""
    return page.evaluate(
        """id => {
            const area = document.querySelector('#playground').getBoundingClientRect();
            const box = document.querySelector(`[data-virus-id="${id}"]`).getBoundingClientRect();
            return [(box.x + box.width / 2 - area.x) / area.width,
                    (box.y + box.height / 2 - area.y) / area.height];
        }""",
        virus_id,
    )


def uncovered_virus(page) -> str:
    """A virus no other one lies on (positions are random, so viruses may overlap)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#playground button[data-virus-id]')].find(el => {
            const box = el.getBoundingClientRect();
            const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
            return hit && hit.closest('button') === el;
        }).dataset.virusId"""
    )


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def database_ids(game) -> set[str]:
    return {v["id"] for v in game.api().list()["viruses"]}


def test_add_shows_the_virus_once_in_both_windows_at_the_same_place(open_page, game):
    alice, bob = open_page(), open_page()
    alice.click("#add-virus")
    wait_ids(alice, database_ids(game))
    (virus_id,) = database_ids(game)
    wait_ids(bob, {virus_id})
    assert alice.locator(f'[data-virus-id="{virus_id}"]').count() == 1
    a, b = position(alice, virus_id), position(bob, virus_id)
    assert abs(a[0] - b[0]) < 0.01 and abs(a[1] - b[1]) < 0.01
    label = alice.get_attribute(f'[data-virus-id="{virus_id}"]', "aria-label")
    assert "kill" in label.lower()
    screenshot(alice, "two-windows-alice")


def test_kill_in_one_window_disappears_from_the_other(open_page, game):
    game.manage("spawn_virus", "--count", "3")
    alice, bob = open_page(), open_page()
    ids = database_ids(game)
    wait_ids(alice, ids)
    victim = uncovered_virus(bob)
    bob.click(f'[data-virus-id="{victim}"]')
    wait_ids(alice, ids - {victim})
    wait_ids(bob, ids - {victim})
    assert database_ids(game) == ids - {victim}


def test_spawner_in_another_process_appears_in_both_windows(open_page, game):
    alice, bob = open_page(), open_page()
    game.manage("spawn_virus", "--count", "2")
    ids = database_ids(game)
    assert len(ids) == 2
    wait_ids(alice, ids)
    wait_ids(bob, ids)
    screenshot(bob, "spawned")


def test_delete_in_the_admin_disappears_from_an_open_page(open_page, game):
    game.manage("spawn_virus", "--count", "2")
    player = open_page()
    ids = database_ids(game)
    wait_ids(player, ids)
    victim = sorted(ids)[0]
    harness.subprocess.run(
        [harness.PYTHON, "manage.py", "createsuperuser", "--no-input", "--username", "admin"],
        cwd=harness.ROOT,
        env={**game.env, "DJANGO_SUPERUSER_PASSWORD": "correct-horse-battery", "DJANGO_SUPERUSER_EMAIL": ""},
        check=True,
        capture_output=True,
    )
    admin = open_page().context.new_page()
    admin.goto(f"{game.url}/admin/login/?next=/admin/viruses/virus/{victim}/delete/")
    admin.fill("#id_username", "admin")
    admin.fill("#id_password", "correct-horse-battery")
    admin.click("input[type=submit]")
    admin.click("form input[type=submit]")  # "Yes, I'm sure"
    admin.wait_for_url("**/admin/viruses/virus/")
    wait_ids(player, ids - {victim})


def test_page_reconnects_after_a_server_restart_and_shows_the_database(open_page, game):
    game.manage("spawn_virus", "--count", "2")
    player = open_page()
    wait_ids(player, database_ids(game))
    game.stop()
    player.wait_for_selector('#connection-status:not([data-state="open"])', timeout=LIVE)
    screenshot(player, "reconnecting")
    # Changes while the page is cut off: it must catch up from the snapshot.
    spawned = game.manage("spawn_virus", "--count", "2").stdout.split()
    victim = spawned[spawned.index("Spawned") + 1]
    game.manage("shell", "-c", f"from viruses.models import Virus; Virus.objects.get(pk='{victim}').delete()")
    game.start()
    wait_open(player, timeout=30_000)
    wait_ids(player, database_ids(game))
    assert len(virus_ids(player)) == 3


def test_keyboard_tab_to_a_virus_and_enter_kills_it(open_page, game):
    game.manage("spawn_virus")
    (virus_id,) = database_ids(game)
    player = open_page()
    wait_ids(player, {virus_id})
    for _ in range(20):
        player.keyboard.press("Tab")
        if player.evaluate("document.activeElement.dataset.virusId") == virus_id:
            break
    else:
        pytest.fail("Tab never reached the virus")
    player.keyboard.press("Enter")
    wait_ids(player, set())
    assert database_ids(game) == set()


def test_refused_add_says_why(chromium, game_env, tmp_path):
    server = harness.GameServer({**game_env, "VIRUS_MAX_ALIVE": "1"}, tmp_path / "full.log").start()
    try:
        server.manage("spawn_virus")
        context = chromium.new_context()
        page = context.new_page()
        page.goto(server.url + "/")
        wait_open(page)
        page.click("#add-virus")
        page.get_by_text("full", exact=False).first.wait_for(timeout=LIVE)
        screenshot(page, "playground-full")
        assert len(virus_ids(page)) == 1
        context.close()
    finally:
        server.stop()


def test_phone_layout_fits_the_screen(open_page, game):
    game.manage("spawn_virus", "--count", "6")
    phone = open_page(viewport={"width": 390, "height": 844})
    wait_ids(phone, database_ids(game))
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    add = phone.locator("#add-virus").bounding_box()
    assert add["x"] + add["width"] <= 390 and add["y"] + add["height"] <= 844
    screenshot(phone, "phone")


class Traffic:
    """What a page sends: its HTTP requests to the API and its WebSocket frames."""

    def __init__(self, page):
        self.api: list[str] = []  # "POST /api/viruses/", ...
        self.frames: list[dict] = []  # actions and resyncs sent over the socket
        page.on("request", self.request)
        page.on("websocket", lambda ws: ws.on("framesent", self.frame))

    def request(self, request) -> None:
        path = request.url.split("//", 1)[1].split("/", 1)[1]
        if path.startswith("api/"):
            self.api.append(f"{request.method} /{path}")

    def frame(self, payload) -> None:
        self.frames.append(json.loads(payload))

    def writes(self) -> list[str]:
        return [call for call in self.api if not call.startswith("GET ")]

    def actions(self) -> list[tuple[str, str | None]]:
        return [(f["type"], f.get("id")) for f in self.frames if f["type"] in ("create", "kill")]


def watched_page(chromium, game):
    """A page whose traffic is recorded from its first request on; returns (page, traffic)."""
    page = chromium.new_context().new_page()
    traffic = Traffic(page)
    page.goto(game.url + "/")
    return page, traffic


def test_add_and_kill_go_over_the_socket_not_http(chromium, game):
    player, traffic = watched_page(chromium, game)
    try:
        wait_open(player)
        player.click("#add-virus")
        wait_ids(player, database_ids(game))
        (virus_id,) = database_ids(game)
        player.click(f'[data-virus-id="{virus_id}"]')
        wait_ids(player, set())
        assert database_ids(game) == set()
        # Its own virus: killed for everyone, scored for nobody, and nothing on the page says it went wrong.
        assert player.text_content("#score-value") == "0"
        cleared = f"Dish cleared by {player.text_content('#player-name')}!"
        assert player.text_content("#toast") in ("", cleared)
        assert traffic.actions() == [("create", None), ("kill", virus_id)]
        assert traffic.writes() == []  # no POST, no DELETE
    finally:
        player.context.close()


def test_while_the_socket_is_down_actions_go_over_http_and_back_once_it_is_up(chromium, game):
    context = chromium.new_context()
    down = threading.Event()
    down.set()

    def route(ws):  # while "down", the page's sockets close before they open; else they pass
        ws.close() if down.is_set() else ws.connect_to_server()

    context.route_web_socket("**/ws/viruses/", route)
    player = context.new_page()
    traffic = Traffic(player)
    try:
        player.goto(game.url + "/")
        player.wait_for_function("() => window.virusGame && window.virusGame.seq !== null")  # shown over HTTP
        assert player.get_attribute("#connection-status", "data-state") != "open"
        player.click("#add-virus")
        wait_ids(player, database_ids(game))
        (virus_id,) = database_ids(game)
        player.click(f'[data-virus-id="{virus_id}"]')
        wait_ids(player, set())
        assert traffic.writes() == ["POST /api/viruses/", f"DELETE /api/viruses/{virus_id}/"]
        down.clear()
        wait_open(player, timeout=40_000)
        player.click("#add-virus")
        wait_ids(player, database_ids(game))
        assert len(database_ids(game)) == 1
        assert traffic.actions() == [("create", None)]
        assert len(traffic.writes()) == 2  # nothing more over HTTP
    finally:
        context.close()


# Players and the leaderboard --------------------------------------------------------------


def wait_board(page, names: list[str], kills: list[int] | None = None, timeout=LIVE) -> None:
    """Wait until the board lists these names (and, if given, these kill counts) in this order."""
    page.wait_for_function(
        """([names, kills]) => {
            const rows = [...document.querySelectorAll('#leaderboard-list li')];
            const shown = rows.map(li => li.querySelector('.name').textContent);
            const counts = rows.map(li => Number(li.querySelector('.kills').textContent));
            return JSON.stringify(shown) === JSON.stringify(names)
                && (kills === null || JSON.stringify(counts) === JSON.stringify(kills));
        }""",
        arg=[names, kills],
        timeout=timeout,
    )


def squash_one(page) -> None:
    """Click a virus nobody covers and wait until it is gone from this page."""
    before = len(virus_ids(page))
    page.click(f'[data-virus-id="{uncovered_virus(page)}"]')
    page.wait_for_function(
        "n => document.querySelectorAll('#playground button[data-virus-id]').length === n",
        arg=before - 1,
        timeout=LIVE,
    )


def test_two_players_see_each_others_names_and_the_same_board_live(open_page, game):
    game.manage("spawn_virus", "--count", "5")
    alice, bob = open_page(), open_page()
    names = {page: page.text_content("#player-name") for page in (alice, bob)}
    assert names[alice] and names[bob] and names[alice] != names[bob]
    ids = database_ids(game)
    wait_ids(alice, ids)
    wait_ids(bob, ids)
    for page in (alice, bob, alice):
        squash_one(page)
    for page in (alice, bob):
        wait_board(page, [names[alice], names[bob]], [2, 1])
    assert (alice.text_content("#score-value"), bob.text_content("#score-value")) == ("2", "1")
    assert (alice.text_content("#player-rank"), bob.text_content("#player-rank")) == ("#1", "#2")
    assert alice.get_attribute("#leaderboard-list li:first-child", "aria-current") == "true"
    for page in (alice, bob):
        page.wait_for_function(
            "names => names.every(n => document.querySelector('#online-names').textContent.includes(n))",
            arg=list(names.values()),
            timeout=LIVE,
        )
    alice.wait_for_function(
        "name => document.querySelector('#event-list').textContent.includes(name + ' squashed a ')",
        arg=names[bob],
        timeout=LIVE,
    )
    screenshot(alice, "players-desktop")


SEED_YESTERDAY = """
from datetime import timedelta
from django.utils import timezone
from viruses import services
from viruses.models import Player
veteran = services.player_create()
yesterday = timezone.now() - timedelta(days=1)
seeded = {"kills": 5, "today_kills": 5, "today_on": yesterday.date(), "scored_at": yesterday}
Player.objects.filter(pk=veteran.pk).update(**seeded)
print(veteran.name)
"""


def test_the_today_switch_shows_the_board_of_the_day_and_back(open_page, game):
    veteran = game.manage("shell", "-c", SEED_YESTERDAY).stdout.splitlines()[-1]  # 5 kills, all yesterday
    game.manage("spawn_virus", "--count", "2")
    alice = open_page()
    name = alice.text_content("#player-name")
    wait_ids(alice, database_ids(game))
    squash_one(alice)
    wait_board(alice, [veteran, name], [5, 1])
    today = alice.get_by_role("button", name="Today's board")
    today.click()
    assert today.get_attribute("aria-pressed") == "true"
    assert alice.text_content("#leaderboard-title") == "Top squashers today"
    wait_board(alice, [name], [1])
    screenshot(alice, "board-today")
    squash_one(alice)  # the live pushes keep the board of the day current
    wait_board(alice, [name], [2])
    today.click()
    assert alice.text_content("#leaderboard-title") == "Top squashers"
    wait_board(alice, [veteran, name], [5, 2])
    assert alice.text_content("#score-value") == "2"  # your own score stays the all-time one


RTL_NAME = "\u05e9\u05dc\u05d5\u05dd 7"  # Hebrew, then a number: without isolation it drags what follows


def test_a_right_to_left_name_is_isolated_wherever_the_page_shows_it(open_page, game):
    game.manage("spawn_virus", "--count", "2")
    alice, bob = open_page(), open_page()
    wait_ids(alice, database_ids(game))
    alice.click("#rename-open")
    alice.fill("#rename-input", RTL_NAME)
    alice.press("#rename-input", "Enter")
    alice.wait_for_function(
        "name => document.querySelector('#player-name').textContent === name", arg=RTL_NAME
    )
    squash_one(alice)
    wait_board(bob, [RTL_NAME])
    bob.wait_for_function(
        "name => document.querySelector('#event-list').textContent.includes(' squashed a ')", arg=RTL_NAME
    )
    bob.reload()  # the online list names alice from the snapshot
    wait_open(bob)
    bob.wait_for_function("() => document.querySelector('#online-names bdi')", timeout=LIVE)
    isolated = """name => [...document.querySelectorAll(
            '#event-list li, #online-names, #leaderboard-list li, #player-name')]
        .filter(el => el.textContent.includes(name))
        .map(el => {
            const holder = el.id === 'player-name' ? el
                : [...el.querySelectorAll('bdi')].find(b => b.textContent === name);
            return [el.id || el.parentElement.id, holder ? getComputedStyle(holder).unicodeBidi : 'none'];
        })"""
    seen = bob.evaluate(isolated, RTL_NAME) + alice.evaluate(isolated, RTL_NAME)
    where = {place for place, _ in seen}
    assert where >= {"event-list", "online-names", "leaderboard-list", "player-name"}, seen
    assert all(bidi in ("isolate", "plaintext") for _, bidi in seen), seen
    screenshot(bob, "rtl-name")


def test_rename_refuses_markup_shows_up_in_the_other_page_and_survives_a_reload(open_page, game):
    game.manage("spawn_virus")
    alice, bob = open_page(), open_page()
    wait_ids(alice, database_ids(game))
    squash_one(alice)
    before = alice.text_content("#player-name")
    wait_board(bob, [before])

    alice.click("#rename-open")
    alice.fill("#rename-input", "<b>x</b>")
    alice.press("#rename-input", "Enter")
    alice.wait_for_function("() => document.querySelector('#rename-error').textContent !== ''", timeout=LIVE)
    assert "letters" in alice.text_content("#rename-error")
    assert alice.get_attribute("#rename-input", "aria-invalid") == "true"
    assert alice.text_content("#player-name") == before
    assert alice.locator("#player b, #leaderboard b").count() == 0

    alice.fill("#rename-input", "Dr Sneeze")
    alice.press("#rename-input", "Enter")
    wait_board(bob, ["Dr Sneeze"])
    assert alice.is_hidden("#rename-form")
    assert alice.text_content("#player-name") == "Dr Sneeze"

    alice.reload()
    wait_open(alice)
    alice.wait_for_function("() => document.querySelector('#player-rank').textContent === '#1'", timeout=LIVE)
    assert (alice.text_content("#player-name"), alice.text_content("#score-value")) == ("Dr Sneeze", "1")


def test_a_banned_player_cannot_score(open_page, game):
    game.manage("spawn_virus")
    alice = open_page()
    (virus_id,) = database_ids(game)
    wait_ids(alice, {virus_id})
    player_id = alice.get_attribute("#player", "data-player-id")
    ban = (
        f"from viruses import services; services.players_set_banned(player_ids=['{player_id}'], banned=True)"
    )
    game.manage("shell", "-c", ban)
    alice.click(f'[data-virus-id="{virus_id}"]')
    alice.wait_for_function(
        "() => document.querySelector('#toast').textContent.includes('banned')", timeout=LIVE
    )
    assert database_ids(game) == {virus_id}
    assert alice.text_content("#score-value") == "0"


def test_phone_shows_the_board_below_the_dish_mid_game(open_page, game):
    game.manage("spawn_virus", "--count", "12")
    phone = open_page(viewport={"width": 390, "height": 844})
    wait_ids(phone, database_ids(game))
    squash_one(phone)
    wait_board(phone, [phone.text_content("#player-name")])
    dish = phone.locator("#playground").bounding_box()
    board = phone.locator("#leaderboard").bounding_box()
    assert board["y"] >= dish["y"] + dish["height"]
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    add = phone.locator("#add-virus").bounding_box()
    assert add["y"] + add["height"] <= 844
    screenshot(phone, "players-phone")


# A dish you can read ------------------------------------------------------------------------


def hidden_viruses(page) -> list[str]:
    """Live viruses whose centre is not their own click target (another one lies on it)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#playground button[data-virus-id]')].filter(el => {
            const box = el.getBoundingClientRect();
            const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
            return !hit || hit.closest('button') !== el;
        }).map(el => el.dataset.virusId)"""
    )


def reading_order_breaks(page) -> int:
    """How many times the DOM (Tab) order goes back up a row or leftwards within a row."""
    return page.evaluate(
        """() => {
            const value = (el, name) => Number(el.style.getPropertyValue(name));
            const at = [...document.querySelectorAll('#playground button[data-virus-id]')]
                .map(el => [Math.floor(value(el, '--y') / 12), value(el, '--x')]);
            return at.slice(1)
                .filter(([row, x], i) => row < at[i][0] || (row === at[i][0] && x < at[i][1])).length;
        }"""
    )


@pytest.mark.parametrize(
    ("width", "height"), [(390, 844), (1920, 1080), (1280, 800)], ids=["phone", "full-hd", "laptop"]
)
def test_a_crowded_dish_hides_no_virus_and_tabs_in_rows(open_page, game, width, height):
    game.manage("spawn_virus", "--count", "80")
    page = open_page(viewport={"width": width, "height": height})
    page.emulate_media(reduced_motion="reduce")  # still viruses: hit-test where they rest
    ids = database_ids(game)
    wait_ids(page, ids)
    page.wait_for_function("() => new Promise(done => requestAnimationFrame(() => done(true)))")
    assert hidden_viruses(page) == []
    assert reading_order_breaks(page) == 0
    screenshot(page, f"crowded-{width}x{height}")


def test_clearing_the_dish_is_celebrated_and_sound_is_off_until_turned_on_and_remembered(open_page, game):
    game.manage("spawn_virus")
    page = open_page()
    wait_ids(page, database_ids(game))
    assert page.get_attribute("#sound-toggle", "aria-pressed") == "false"
    page.click("#sound-toggle")
    assert page.get_attribute("#sound-toggle", "aria-pressed") == "true"
    squash_one(page)
    page.wait_for_function(
        "() => document.querySelector('#toast').textContent.startsWith('Dish cleared by ')", timeout=LIVE
    )
    page.reload()
    wait_open(page)
    assert page.get_attribute("#sound-toggle", "aria-pressed") == "true"


def seed_board(game, players: int = 10) -> None:
    """Put `players` players with 10, 20, ... kills on the board."""
    code = (
        "from django.utils import timezone; from viruses import names; from viruses.models import Player\n"
        f"for i in range({players}):\n"
        "    name = f'Seeded {i}'\n"
        "    key, upper_key = names.keys(name)\n"
        "    Player.objects.create(name=name, name_key=key, name_upper_key=upper_key, kills=10 * (i + 1),"
        " scored_at=timezone.now())"
    )
    game.manage("shell", "-c", code)


def test_phone_shows_the_whole_board_and_what_follows_it_without_an_inner_scroll(open_page, game):
    seed_board(game)
    game.manage("spawn_virus", "--count", "3")
    phone = open_page(viewport={"width": 390, "height": 844})
    squash_one(phone)  # one kill: ranked #11, below the top 10
    phone.wait_for_function("document.querySelectorAll('#leaderboard-list li').length === 10", timeout=LIVE)
    phone.wait_for_selector("#leaderboard-me:not(:empty)", timeout=LIVE)
    screenshot(phone, "board-phone")
    board = phone.eval_on_selector("#leaderboard", "el => [el.scrollHeight, el.clientHeight]")
    assert board[0] <= board[1], f"the board scrolls inside itself: {board}"
    below = ["#leaderboard-list li:nth-child(10)", "#leaderboard-me", "#online-names", "#event-list li"]
    for selector in below:
        phone.locator(selector).scroll_into_view_if_needed()
        assert phone.locator(selector).is_visible(), selector
        box = phone.locator(selector).bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 844, (selector, box)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "board-phone-scrolled")


def test_an_empty_feed_says_so_instead_of_a_bare_heading(open_page):
    page = open_page()
    assert page.locator("#event-list li").count() == 0
    placeholder = page.locator("#events-empty")
    assert placeholder.is_visible() and placeholder.text_content().strip()
    screenshot(page, "feed-empty-desktop")


def test_a_page_refused_for_its_networks_connections_says_so_and_gets_in_once_there_is_room(
    chromium, game_env, tmp_path
):
    server = harness.GameServer(
        {**game_env, "VIRUS_MAX_CONNECTIONS_PER_ADDRESS": "1"}, tmp_path / "cap.log"
    ).start()
    try:
        context = chromium.new_context()
        page = context.new_page()
        status = page.locator("#connection-status")
        with websocket_connect(server.ws_url, origin=server.url):  # the network's one place
            page.goto(server.url + "/")
            page.get_by_text("Too many connections from your network", exact=False).wait_for(timeout=LIVE)
            assert status.get_attribute("data-state") == "connecting"
            screenshot(page, "refused-network")
        # Room again: the page's next try gets in.
        wait_open(page, timeout=30_000)
        assert "Too many" not in status.text_content()
        context.close()
    finally:
        server.stop()


# The guest's device clock runs 7 minutes fast: a countdown by the device's clock would be off.
FAST_CLOCK = "(() => { const now = Date.now.bind(Date); Date.now = () => now() + 7 * 60 * 1000; })()"


def start_round_from_page(page, code: str, seconds: int) -> int:
    """Start a round with the page's own cookie and CSRF token (the buttons offer 30 s and up)."""
    return page.evaluate(
        """([code, seconds]) => fetch(`/api/rooms/${code}/round/`, {
            method: "POST",
            headers: {"Content-Type": "application/json",
                      "X-CSRFToken": document.querySelector('meta[name="csrf-token"]').content},
            body: JSON.stringify({seconds}),
        }).then(r => r.status)""",
        [code, seconds],
    )


def assert_same_second(a, b, samples: int = 4) -> None:
    """Both pages show the same second left, sampled where no second boundary falls in between."""
    agreed = 0
    for _ in range(5 * samples):
        before = a.get_attribute("#round-countdown", "data-seconds")
        other = b.get_attribute("#round-countdown", "data-seconds")
        after = a.get_attribute("#round-countdown", "data-seconds")
        if before == after:
            assert other == before and int(before) > 0
            agreed += 1
            if agreed == samples:
                return
        time.sleep(0.27)
    pytest.fail(f"only {agreed} clean samples of the two countdowns")


def podium_shows(page, number: int, timeout: float = LIVE) -> None:
    page.get_by_role("dialog", name=f"Round {number} is over").wait_for(timeout=timeout)


def test_a_round_counts_down_alike_on_two_pages_and_ends_on_a_podium_for_both(chromium, game):
    contexts = [chromium.new_context(viewport={"width": 1280, "height": 800}) for _ in range(2)]
    contexts[1].add_init_script(FAST_CLOCK)
    host, guest = (context.new_page() for context in contexts)
    host.goto(game.url + "/")
    code = host.evaluate(
        """() => fetch("/api/rooms/", {method: "POST", body: JSON.stringify({name: "Class 4B"}),
            headers: {"Content-Type": "application/json",
                      "X-CSRFToken": document.querySelector('meta[name="csrf-token"]').content},
        }).then(r => r.json()).then(room => room.code)"""
    )
    for page in (host, guest):
        page.goto(f"{game.url}/r/{code}/")
        wait_open(page)
    start = host.get_by_role("button", name="Start a 30 second round")
    start.wait_for(timeout=LIVE)
    assert guest.get_by_role("button", name="Start a 30 second round").count() == 0  # the host's alone
    start.click()
    for page in (host, guest):
        page.wait_for_function(
            "() => Number(document.querySelector('#round-countdown').dataset.seconds) > 20"
        )
        page.wait_for_selector("#playground button[data-virus-id]")
    assert_same_second(host, guest)
    assert guest.get_by_role("button", name="Stop round").count() == 0
    for page, kills in ((host, 2), (guest, 1)):
        for _ in range(kills):
            victim = uncovered_virus(page)
            page.click(f'[data-virus-id="{victim}"]')
            page.wait_for_selector(f'[data-virus-id="{victim}"]', state="detached", timeout=LIVE)
    host.get_by_text("Round 1", exact=True).first.wait_for(timeout=LIVE)
    host.wait_for_function("() => document.querySelectorAll('#leaderboard-list li').length === 2")
    screenshot(host, "round-running")
    host.get_by_role("button", name="Stop round").click()
    for page in (host, guest):
        podium_shows(page, 1)
        assert page.locator("#podium-places li").count() == 2
    assert host.locator("#podium-me").text_content() == "You placed #1 with 2 squashed."
    assert guest.locator("#podium-me").text_content() == "You placed #2 with 1 squashed."
    for page in (host, guest):  # the room's all-time board is back
        page.get_by_role("heading", name="Top squashers").wait_for(timeout=LIVE)
    guest.wait_for_timeout(600)  # for the picture: the confetti mid-fall
    screenshot(guest, "round-podium")
    # The next round ends by the server's clock, the host's page doing nothing.
    assert start_round_from_page(host, code, 15) == 201
    for page in (host, guest):
        page.get_by_role("dialog").wait_for(state="hidden", timeout=LIVE)
    assert_same_second(guest, host, samples=2)
    for page in (host, guest):
        podium_shows(page, 2, timeout=15_000 + LIVE)
        assert page.locator("#podium-me").text_content() == "You did not score this round."
    for context in contexts:
        context.close()
