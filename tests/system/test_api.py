"""The HTTP contract: JSON in and out, CSRF enforced, clear 4xx, never a 500."""

import uuid

import pytest
from django.test import Client

from tests.support import inprocess
from viruses import services
from viruses.models import Virus

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser():
    return inprocess.browser()


def post(client, path="/api/viruses/"):
    return client.post(path, headers={"x-csrftoken": client.token})


def delete(client, virus_id):
    return client.delete(f"/api/viruses/{virus_id}/", headers={"x-csrftoken": client.token})


def test_page_sets_the_csrf_cookie_and_has_the_hooks(browser):
    html = browser.get("/").content.decode()
    assert 'id="add-virus"' in html
    assert 'id="playground"' in html


def test_list_returns_seq_and_viruses(browser):
    virus = services.virus_create()
    body = browser.get("/api/viruses/").json()
    assert body["seq"] == 1
    assert body["viruses"] == [
        {
            "id": str(virus.id),
            "kind": virus.kind,
            "x": virus.x,
            "y": virus.y,
            "created_at": virus.created_at.isoformat(),
        }
    ]


def test_create_answers_201_with_the_virus(browser):
    response = post(browser)
    assert response.status_code == 201
    body = response.json()
    assert Virus.objects.filter(pk=body["id"]).exists()
    assert set(body) == {"id", "kind", "x", "y", "created_at"}


def test_create_without_csrf_token_is_refused_as_json(browser):
    response = browser.post("/api/viruses/")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    assert Virus.objects.count() == 0


def test_kill_answers_204_then_404(browser):
    virus = services.virus_create()
    assert delete(browser, virus.id).status_code == 204
    again = delete(browser, virus.id)
    assert again.status_code == 404
    assert again.json()["error"]


@pytest.mark.parametrize("bad_id", ["nope", "12345", "%20", str(uuid.uuid4())])
def test_kill_of_malformed_or_unknown_id_is_404_json(browser, bad_id):
    response = delete(browser, bad_id)
    assert response.status_code == 404
    assert "error" in response.json()


def test_kill_without_csrf_token_is_refused(browser):
    virus = services.virus_create()
    assert browser.delete(f"/api/viruses/{virus.id}/").status_code == 403
    assert Virus.objects.filter(pk=virus.id).exists()


def test_alive_cap_answers_409_and_creates_nothing(browser, settings):
    settings.VIRUS_MAX_ALIVE = 2
    assert post(browser).status_code == 201
    assert post(browser).status_code == 201
    response = post(browser)
    assert response.status_code == 409
    assert "full" in response.json()["error"]
    assert Virus.objects.count() == 2


def test_rate_limit_answers_429_with_retry_after(browser, settings):
    settings.VIRUS_RATE_LIMIT, settings.VIRUS_RATE_BURST = 3, 3
    statuses = [post(browser).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited = post(browser)
    assert int(limited["Retry-After"]) == 20  # one token at 3 per minute
    assert "too many" in limited.json()["error"]
    assert Virus.objects.count() == 3


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("get", f"/api/viruses/{uuid.uuid4()}/", "DELETE"),
        ("put", "/api/viruses/", "GET, POST, HEAD"),
        ("post", "/healthz", "GET, HEAD"),
        ("delete", "/", "GET, HEAD"),
    ],
)
def test_wrong_method_is_refused_as_json_naming_the_allowed_ones(browser, method, path, allow):
    response = getattr(browser, method)(path, headers={"x-csrftoken": browser.token})
    assert response.status_code == 405
    assert response["Allow"] == allow
    assert response.json() == {"error": f"method {method.upper()} not allowed here"}


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("post", "/api/viruses/", "application/x-www-form-urlencoded"),  # the CSRF check reads a form
        ("patch", "/api/me/", "application/json"),
    ],
)
def test_a_body_over_the_upload_limit_is_refused_413_as_json_with_one_log_line(
    browser, method, path, content_type, caplog
):
    body = "a=" + "x" * 3_000_000
    caplog.clear()
    response = getattr(browser, method)(
        path, body, content_type=content_type, headers={"x-csrftoken": browser.token}
    )
    assert response.status_code == 413
    assert "over 2621440 bytes" in response.json()["error"]
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if "http.too_large" in line] == [
        f"event=http.too_large method={method.upper()} path={path} size={len(body)}"
    ]
    assert not any(r.exc_info for r in caplog.records)
    assert Virus.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/nope", "/api/viruses/x/y/", "/api/"])
def test_an_unknown_path_under_the_api_is_404_json(browser, path):
    response = browser.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "no API endpoint here"}


def test_an_unknown_page_stays_an_html_404(browser):
    response = browser.get("/nope")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/", "/api/viruses/", "/healthz"])
def test_get_endpoints_answer_head(browser, path):
    response = browser.head(path)
    assert response.status_code == 200
    assert response["Content-Type"] == browser.get(path)["Content-Type"]


def test_csrf_cookie_is_http_only_and_the_page_carries_the_token(browser):
    page = browser.get("/")
    assert page.cookies["csrftoken"]["httponly"] is True
    assert 'name="csrf-token" content="' in page.content.decode()


def test_healthz_reports_database_and_channel_layer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok"}


def test_healthz_details_only_for_monitoring_addresses(settings):
    import ipaddress

    settings.HEALTHZ_DETAILS_FROM = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1")]
    for monitor in ("10.1.2.3", "::1"):
        response = Client(REMOTE_ADDR=monitor).get("/healthz")
        assert response.json() == {"database": "ok", "channel_layer": "ok"}, monitor
    for stranger in ("203.0.113.9", "not-an-address"):
        response = Client(REMOTE_ADDR=stranger).get("/healthz")
        assert (response.status_code, response.json()) == (200, {"status": "ok"}), stranger


def test_healthz_names_an_unreachable_channel_layer(client, settings, unused_tcp_port):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{unused_tcp_port}/0"]},
        }
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "channel_layer": "down"}
