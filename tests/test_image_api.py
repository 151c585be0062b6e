"""Inline images over HTTP (issue 13 item 3): createJob keeps a data: image in the store and
the job refers to ``/api/images/<sha256>``; its owner (or an admin) GETs it, with long private
caching and the CORP a cross-origin frontend needs; createJob accepts the path of the caller's
own images; history answers carry no image bytes. Both backends."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from storage.images import IMAGE_PATH
from tests.support import ROOT, Server, backend_server, png_bytes, wait_for_status

FRONTEND = "https://app.example.com"
CREATE = "/visionPipeline.createJob"
RED = png_bytes((230, 20, 20))
GREEN = png_bytes((20, 200, 40))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Server]:  # fmt: skip
    with backend_server(request.param, tmp_path_factory.mktemp("images"), prefix="vp_img",
                        CORS_ALLOW_ORIGINS=FRONTEND) as server:  # fmt: skip
        yield server


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(client: httpx.Client, image_url: str) -> httpx.Response:
    body = {"imageUrl": image_url, "analysisPurpose": "images", "outputFormat": "bullet_points"}
    return client.post(CREATE, json=body)


def created(client: httpx.Client, image_url: str) -> int:
    r = create(client, image_url)
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


def history(client: httpx.Client) -> httpx.Response:
    r = client.get("/visionPipeline.getJobHistory", params={"input": '{"limit":100}'})
    assert r.status_code == 200, r.text
    return r


def image_get(srv: Server, client: httpx.Client | None, name: str, method: str = "GET",
              **headers: str) -> httpx.Response:  # fmt: skip
    sent = dict(client.headers) if client is not None else {}
    sent.pop("host", None)
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return httpx.request(method, srv.base + IMAGE_PATH + name, headers=sent, timeout=30)


def stored(srv: Server, open_id: str) -> list[tuple[Any, ...]]:
    return srv.sql('SELECT i.sha256, i."mimeType", i."byteSize", i.width, i.height '
                   'FROM "visionImages" AS i JOIN users AS u ON u.id = i."userId" '
                   'WHERE u."openId" = ? ORDER BY i.id', open_id)  # fmt: skip


def test_a_data_url_job_refers_to_its_stored_image_and_the_same_image_is_stored_once(
    srv: Server,
) -> None:
    with srv.client("img-owner") as owner, srv.client("img-other") as other:
        first = created(owner, data_url(RED))
        again = created(owner, data_url(RED))
        theirs = created(other, data_url(RED))
        urls = {j["jobId"]: j["imageUrl"] for j in history(owner).json()["result"]["data"]}
        assert urls == {first: IMAGE_PATH + sha(RED), again: IMAGE_PATH + sha(RED)}
        assert history(other).json()["result"]["data"][0]["imageUrl"] == IMAGE_PATH + sha(RED)
        assert stored(srv, "img-owner") == [(sha(RED), "image/png", len(RED), 64, 48)]
        assert stored(srv, "img-other") == [(sha(RED), "image/png", len(RED), 64, 48)]
        # The worker reads the job's image from the store.
        status = wait_for_status(owner, first)
        assert status["status"] == "complete", status
        assert "red" in status["geminOutput"]["colors"]["description"].lower()
        assert wait_for_status(other, theirs)["status"] == "complete"


def test_the_owner_gets_the_image_cached_privately_for_a_year(srv: Server) -> None:
    with srv.client("img-getter") as owner:
        created(owner, data_url(GREEN))
        r = image_get(srv, owner, sha(GREEN))
        assert r.status_code == 200 and r.content == GREEN
        assert r.headers["content-type"] == "image/png"
        assert r.headers["content-length"] == str(len(GREEN))
        assert r.headers["cache-control"] == "private, max-age=31536000, immutable"
        assert r.headers["etag"] == f'"{sha(GREEN)}"'
        assert r.headers["cross-origin-resource-policy"] == "same-origin"  # no Origin: the default
        assert r.headers["x-content-type-options"] == "nosniff"
        cached = image_get(srv, owner, sha(GREEN), if_none_match=f'W/"x", "{sha(GREEN)}"')
        assert (cached.status_code, cached.content) == (304, b"")
        assert cached.headers["etag"] == f'"{sha(GREEN)}"'
        head = image_get(srv, owner, sha(GREEN), "HEAD")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(GREEN))
        # Cookie sessions are sessions too (an <img> sends the cookie, never a bearer token).
        cookie = owner.headers["authorization"].removeprefix("Bearer ")
        r = httpx.get(srv.base + IMAGE_PATH + sha(GREEN), cookies={"app_session_id": cookie})
        assert r.status_code == 200 and r.content == GREEN


def test_nobody_else_learns_that_an_image_exists_but_an_admin_gets_it(srv: Server) -> None:
    with srv.client("img-private") as owner, srv.client("img-stranger") as stranger:
        created(owner, data_url(RED))
        unknown = sha(b"nobody has this")
        for client, name in [(stranger, sha(RED)), (None, sha(RED)), (owner, unknown),
                             (owner, "not-a-sha"), (owner, sha(RED).upper())]:  # fmt: skip
            r = image_get(srv, client, name)
            assert r.status_code == 404, (name, r.text)
            assert r.json() == {"error": {"message": "Image not found", "code": "NOT_FOUND"}}
        # not even to a client that claims to have it cached
        assert image_get(srv, stranger, sha(RED), if_none_match=f'"{sha(RED)}"').status_code == 404
    done = subprocess.run([sys.executable, "-m", "rpc.cli", "users", "set-role", "img-admin",
                           "admin", "--create"], cwd=ROOT, env=srv.env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with srv.client("img-admin") as admin:
        r = image_get(srv, admin, sha(RED))
        assert r.status_code == 200 and r.content == RED


def test_a_frontend_listed_in_cors_allow_origins_may_show_the_image(srv: Server) -> None:
    with srv.client("img-cors") as owner:
        created(owner, data_url(RED))
        for headers in ({"origin": FRONTEND}, {"referer": FRONTEND + "/jobs/12?x=1"}):
            r = image_get(srv, owner, sha(RED), **headers)
            assert r.status_code == 200, headers
            assert r.headers["cross-origin-resource-policy"] == "cross-origin", headers
        cached = image_get(srv, owner, sha(RED), origin=FRONTEND, if_none_match=f'"{sha(RED)}"')
        assert cached.headers["cross-origin-resource-policy"] == "cross-origin"
        for headers in ({"origin": "https://evil.example"},
                        {"referer": "https://evil.example/app.example.com"}):  # fmt: skip
            r = image_get(srv, owner, sha(RED), **headers)
            assert r.headers["cross-origin-resource-policy"] == "same-origin", headers


def test_create_job_accepts_the_path_of_the_caller_s_own_image_only(srv: Server) -> None:
    with srv.client("img-reuser") as owner, srv.client("img-thief") as thief:
        created(owner, data_url(GREEN))
        job_id = created(owner, IMAGE_PATH + sha(GREEN))
        status = wait_for_status(owner, job_id)
        assert status["status"] == "complete", status
        assert "green" in status["geminOutput"]["colors"]["description"].lower()
        for client, name in [(thief, sha(GREEN)), (owner, sha(b"unknown"))]:
            r = create(client, IMAGE_PATH + name)
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["message"], error["data"]["code"]) == ("Image not found", "BAD_REQUEST")
        r = create(owner, IMAGE_PATH + "invalid")
        assert r.status_code == 400 and "imageUrl" in r.json()["error"]["message"]
        assert len(history(thief).json()["result"]["data"]) == 0


def test_create_job_refuses_a_data_url_the_worker_would_refuse_with_its_message(
    srv: Server,
) -> None:
    bmp = io.BytesIO()
    Image.new("RGB", (4, 4)).save(bmp, "BMP")
    cases = [
        (b"just text", "The data is not an image (expected JPEG, PNG, WEBP or GIF)"),
        (bmp.getvalue(), "Unsupported image format BMP; use JPEG, PNG, WEBP or GIF"),
    ]
    with srv.client("img-refused") as client:
        for data, message in cases:
            r = create(client, data_url(data))
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["message"], error["data"]["code"]) == (message, "BAD_REQUEST")
        r = create(client, "data:image/png;base64,iVBOR!!!")
        assert r.json()["error"]["message"] == "The data URL's base64 data is malformed"
        assert history(client).json()["result"]["data"] == []
        assert stored(srv, "img-refused") == []


def noise_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def test_no_history_or_status_answer_carries_the_image_of_a_1_mib_data_url_job(
    srv: Server,
) -> None:
    big = noise_png(600)
    assert len(big) > 1 << 20
    with srv.client("img-big") as client:
        job_id = created(client, data_url(big))
        r = history(client)
        assert len(r.content) < 1000, len(r.content)
        [job] = r.json()["result"]["data"]
        assert job["imageUrl"] == IMAGE_PATH + sha(big)
        status = client.get("/visionPipeline.getJobStatus",
                            params={"input": json.dumps({"jobId": job_id})})  # fmt: skip
        assert status.status_code == 200 and len(status.content) < 20_000
        assert image_get(srv, client, sha(big)).content == big


def test_local_mode_serves_the_local_user_s_images(tmp_path: Path) -> None:
    with backend_server("sqlite", tmp_path, "--no-worker", JWT_SECRET="") as local:
        with httpx.Client(base_url=local.trpc, timeout=30) as anyone:
            created(anyone, data_url(RED))
            r = image_get(local, None, sha(RED))
            assert r.status_code == 200 and r.content == RED
