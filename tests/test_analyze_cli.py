"""`vision-pipeline analyze`, run as a subprocess against a real server (API + worker, offline
providers) on SQLite and PostgreSQL: a local file is uploaded and its job followed to the
end, a URL is sent as is; the result is printed for a person (no escape codes when piped,
true-colour swatches when the terminal has them) or as getJobStatus's JSON; each way of
failing has its words and its exit code (0, 1, 2, 3, 130), never a traceback.

The parts with no server (the SSE reader, the error envelopes, the progress lines) are
checked directly below."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from rpc.cli import main
from rpc.terminal.client import error_message, refusal
from rpc.terminal.events import parse
from rpc.terminal.follow import PlainProgress, _LiveView
from rpc.terminal.render import render_result
from tests.support import (
    ROOT,
    Server,
    backend_server,
    data_url,
    free_port,
    png_bytes,
    wait_for_status,
)

RED = (230, 20, 20)
RED_HEX = "#e61414"
ESC = "\x1b"
# Variables that make rich colour a pipe: cleared, so "piped" means piped.
COLOUR_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLORTERM")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in COLOUR_VARIABLES}
    env.pop("VISION_PIPELINE_TOKEN", None)
    env.update(PYTHONUNBUFFERED="1", COLUMNS="100", **extra)
    return env


def analyze(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpc.cli", "analyze", *args], cwd=ROOT, env=cli_env(**env),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr


@pytest.fixture
def red_png(tmp_path: Path) -> Path:
    path = tmp_path / "brand.png"
    path.write_bytes(png_bytes(RED))
    return path


def against(server: Server, open_id: str = "analyst") -> tuple[str, ...]:
    return ("--server", server.base, "--token", server.token(open_id))


def job_id_of(done: subprocess.CompletedProcess[str]) -> int:
    first = done.stderr.splitlines()[0]  # "job N created on …"
    assert first.startswith("job "), done.stderr
    return int(first.split()[1])


def status_of(server: Server, job_id: int, open_id: str = "analyst") -> dict[str, Any]:
    with server.client(open_id) as client:
        return wait_for_status(client, job_id)


def test_a_local_file_is_uploaded_and_its_result_printed_without_escape_codes(
    server: Server, red_png: Path
) -> None:
    done = analyze(str(red_png), "--purpose", "brand check", *against(server))
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    status = status_of(server, job_id_of(done))
    assert status["status"] == "complete"
    assert status["geminOutput"]["colors"]["primary"] == [RED_HEX]
    assert RED_HEX in done.stdout
    titles = [piece["title"] for piece in status["deepseekOutput"]]
    assert len(titles) > 1 and all(title in done.stdout for title in titles)
    for section in ("Palette", "Mood and tone", "Composition", "Brand insights", "Usage"):
        assert section in done.stdout
    assert "Cost: $0.0000" in done.stdout
    # Progress went to stderr as plain lines, by the stages' human names (the earlier stages
    # only if the stream opened before they passed: the offline job takes milliseconds).
    assert f"job {status['jobId']}: done (100%)" in done.stderr
    assert ESC not in done.stdout and ESC not in done.stderr


def test_json_prints_get_job_status_answer(server: Server, red_png: Path) -> None:
    done = analyze(str(red_png), "--json", "--format", "social_media_post", *against(server))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == status_of(server, printed["jobId"])
    assert printed["status"] == "complete" and printed["deepseekOutput"]


def test_a_terminal_with_true_colour_gets_swatches(server: Server, red_png: Path) -> None:
    done = analyze(str(red_png), *against(server), FORCE_COLOR="1", COLORTERM="truecolor")
    assert done.returncode == 0, done.stderr
    assert f"{ESC}[48;2;230;20;20m" in done.stdout  # the swatch: a true-colour background
    assert RED_HEX in done.stdout


def test_a_url_whose_job_ends_in_error_exits_1(server: Server, images: str) -> None:
    done = analyze(f"{images}/missing.png", *against(server))
    no_traceback(done)
    assert done.returncode == 1, done.stderr
    status = status_of(server, job_id_of(done))
    assert status["status"] == "error"
    assert f"Job {status['jobId']} failed" in done.stdout
    assert status["errorMessage"] in done.stdout


def test_a_missing_file_exits_2_in_words(tmp_path: Path) -> None:
    done = analyze(str(tmp_path / "nowhere.png"), "--server", f"http://127.0.0.1:{free_port()}")
    no_traceback(done)
    assert done.returncode == 2
    assert "nowhere.png: no such file" in done.stderr


def test_a_file_the_server_refuses_as_bad_input_exits_2(server: Server, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    done = analyze(str(notes), *against(server))
    no_traceback(done)
    assert done.returncode == 2
    assert "The data is not an image (expected JPEG, PNG, WEBP or GIF)" in done.stderr


def test_a_bad_token_exits_3(server: Server, red_png: Path) -> None:
    done = analyze(str(red_png), "--server", server.base, VISION_PIPELINE_TOKEN="not-a-token")
    no_traceback(done)
    assert done.returncode == 3
    assert "refused the credentials" in done.stderr and "Please login (10001)" in done.stderr


def test_an_unreachable_server_exits_3(red_png: Path) -> None:
    done = analyze(str(red_png), "--server", f"http://127.0.0.1:{free_port()}")
    no_traceback(done)
    assert done.returncode == 3
    assert "could not reach the server" in done.stderr


def test_ctrl_c_stops_following_and_the_job_goes_on(server: Server, images: str) -> None:
    args = [sys.executable, "-m", "rpc.cli", "analyze", f"{images}/slow/2/red.png",
            *against(server)]  # fmt: skip
    process = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stderr is not None
    seen = [process.stderr.readline()]  # "job N created on …"
    while "analysing the image" not in seen[-1]:  # perhaps "waiting in the queue" first
        seen.append(process.stderr.readline())
        assert len(seen) < 5 and seen[-1], seen
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    job_id = int(seen[0].split()[1])
    assert f"Stopped following job {job_id}; it goes on" in err
    assert f"vision-pipeline analyze --job {job_id} --server {server.base} --token TOKEN" in err
    assert f'curl -H "authorization: Bearer TOKEN" \'{server.base}/api/trpc/' in err
    assert server.token("analyst") not in err  # named, never shown
    assert "Traceback" not in out + err
    # Not cancelled: it ends complete, and --job follows it to its end.
    assert status_of(server, job_id)["status"] == "complete"
    again = analyze("--job", str(job_id), *against(server))
    assert again.returncode == 0, again.stderr
    assert RED_HEX in again.stdout


def test_another_users_job_is_not_shown(server: Server) -> None:
    job = {"imageUrl": data_url(RED), "analysisPurpose": "p", "outputFormat": "bullet_points"}
    with server.client("owner") as client:
        job_id = client.post("/visionPipeline.createJob", json=job).json()["result"]["data"][
            "jobId"
        ]
        assert wait_for_status(client, job_id)["status"] == "complete"
    done = analyze("--job", str(job_id), *against(server, "someone-else"))
    no_traceback(done)
    assert done.returncode == 3
    assert f"following job {job_id} refused" in done.stderr
    assert RED_HEX not in done.stdout


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server in local mode (no JWT_SECRET): every request is the local user's; its event
    streams end every 200 ms without ``end``, as SSE_MAX_DURATION_MS does; two uploads a
    minute at most."""
    tmp = tmp_path_factory.mktemp("local")
    with backend_server("sqlite", tmp, JWT_SECRET="", SSE_MAX_DURATION_MS="200",
                        UPLOADS_PER_MINUTE_PER_USER="2") as srv:  # fmt: skip
        yield srv


def test_local_mode_needs_no_token_and_streams_are_reopened(local_server: Server, images: str
                                                            ) -> None:  # fmt: skip
    # The job waits 1 s for its image: its stream ends several times before it does.
    done = analyze(f"{images}/slow/1/red.png", "--server", local_server.base)
    assert done.returncode == 0, done.stderr
    assert RED_HEX in done.stdout
    stages = [line.split("] ", 1)[1] for line in done.stderr.splitlines() if "] job" in line]
    assert stages[-3:] == [f"job {job_id_of(done)}: {name}" for name in
                           ("analysing the image (25%)", "writing the content (60%)",
                            "done (100%)")]  # fmt: skip
    assert local_server.log().count("/events") > 2


def test_over_a_quota_exits_3(local_server: Server, red_png: Path) -> None:
    upload = local_server.trpc + "/visionPipeline.uploadImage"
    headers = {"content-type": "application/octet-stream"}
    for _ in range(2):  # the minute's two uploads
        assert httpx.post(upload, content=red_png.read_bytes(), headers=headers).is_success
    done = analyze(str(red_png), "--server", local_server.base)
    no_traceback(done)
    assert done.returncode == 3
    assert "the upload refused (over a quota)" in done.stderr


def usage_exit(*args: str) -> int:
    """The exit code of ``analyze ARGS`` in this process (argparse's refusals included)."""
    try:
        return main(["analyze", *args])
    except SystemExit as exc:
        return int(exc.code or 0)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_exit() == 2  # neither an image nor --job
    assert usage_exit("x.png", "--job", "3") == 2
    assert "not both" in capsys.readouterr().err
    assert usage_exit("x.png", "--creativity", "3") == 2
    assert "is not a number from 0 to 2" in capsys.readouterr().err
    assert usage_exit("x.png", "--server", "localhost:3000") == 2
    assert "is not an http(s) URL" in capsys.readouterr().err
    assert usage_exit("x.png", "--format", "haiku") == 2


# The parts without a server.


def test_the_sse_reader_reads_events_and_skips_comments() -> None:
    lines = [": connected", "", "event: progress", "id: 4", 'data: {"status":"pending"}', "",
             ": ping", "", "event: end", "data: {}", ""]  # fmt: skip
    events = list(parse(lines))
    assert [(e.name, e.id, e.data) for e in events] == [
        ("progress", "4", '{"status":"pending"}'), ("end", None, "{}")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"json": {"message": "not an image", "code": -32600}}}, "not an image"),
        ({"error": {"message": "Job not found", "code": "NOT_FOUND"}}, "Job not found"),
        ({"error": {"message": '[{"path":["imageUrl"],"message":"Invalid URL"}]'}},
         "imageUrl: Invalid URL"),
        ({"error": "a bearer token is required"}, "a bearer token is required"),
        ("not json", "HTTP 502 Bad Gateway"),
    ],
)  # fmt: skip
def test_error_messages_from_every_envelope(body: Any, message: str) -> None:
    content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    response = httpx.Response(502 if isinstance(body, str) else 400, content=content)
    assert error_message(response) == message


@pytest.mark.parametrize(
    ("status", "code"), [(400, 2), (404, 2), (413, 2), (415, 2), (401, 3), (403, 3), (429, 3),
                         (500, 3), (503, 3)]
)  # fmt: skip
def test_refusals_map_to_exit_codes(status: int, code: int) -> None:
    refused = refusal(httpx.Response(status, json={"error": {"message": "no"}}), "the job")
    assert refused.code == code and "no" in refused.message


def test_plain_progress_shows_streamed_pieces_once_each() -> None:
    out = io.StringIO()
    progress = PlainProgress(Console(file=out, highlight=False, soft_wrap=True), 7)
    generating = {"status": "deepseek_generating", "progress": 60}
    progress.show({"status": "gemini_analyzing", "progress": 25})
    progress.show(generating)
    progress.show({**generating, "partialContent": "Colour st"})  # no pieces yet: no line
    progress.show({**generating, "partialPieces": [{"title": "Colour story", "body": "Red"}]})
    progress.show({**generating, "partialPieces": [{"title": "Colour story", "body": "Red."},
                                                   {"title": "Mood", "body": "Bo"}]})  # fmt: skip
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["job 7: analysing the image (25%)", "job 7: writing the content (60%)",
                     "  piece 1: Colour story", "  piece 2: Mood"]  # fmt: skip


def test_render_reads_loose_outputs_without_failing() -> None:
    out = io.StringIO()
    status = {"jobId": 3, "status": "complete",
              "geminOutput": {"colors": {"primary": ["#112233"], "secondary": ["nonsense"]},
                              "mood_and_tone": "calm", "composition": {"layout": ["a", "b"]}},
              "deepseekOutput": ["a plain string piece", {"body": "untitled"}]}  # fmt: skip
    render_result(Console(file=out, highlight=False, soft_wrap=True), status, None)
    text = out.getvalue()
    assert "#112233  primary" in text and "nonsense" not in text
    assert "Layout: a, b" in text and "1. a plain string piece" in text and "2. Piece 2" in text
    assert "Cost: not reported" in text and ESC not in text
    assert text.startswith("Job 3 complete\n")  # no times: no duration


def test_no_color_keeps_the_hex_codes_and_drops_the_swatches() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", no_color=True)
    colors = {"palette": [{"hex": "#E61414", "name": "red"}]}
    status = {
        "jobId": 4,
        "status": "complete",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "completedAt": "2026-01-01T00:00:02.500Z",
        "geminOutput": {"colors": colors},
    }
    render_result(console, status, None)
    text = out.getvalue()
    assert "Job 4 complete in 2.5s" in text and "#e61414" in text
    assert "48;2" not in text and "      #e61414" not in text


def test_the_live_view_shows_the_content_as_it_streams_in() -> None:
    view = _LiveView(5)

    def shown() -> str:
        out = io.StringIO()
        Console(file=out, width=100, highlight=False).print(view)
        return out.getvalue()

    view.update({"status": "gemini_analyzing", "progress": 25})
    assert "job 5: analysing the image  25%" in shown()
    view.update({"status": "deepseek_generating", "progress": 60, "partialContent": "Red le"})
    assert "writing the content" in shown() and "Red le" in shown()
    pieces = [{"title": "Colour story", "body": "Red leads."}, {"title": "Mood", "body": "Bo"}]
    view.update({"status": "deepseek_generating", "progress": 60, "partialContent": "raw",
                 "partialPieces": pieces})  # fmt: skip
    assert "Colour story: Red leads.\nMood: Bo" in shown() and "raw" not in shown()
    view.update({"status": "complete", "progress": 100, "partialPieces": pieces})
    assert "done  100%" in shown() and "Colour story" not in shown()
