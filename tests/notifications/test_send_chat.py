from pathlib import Path

import pytest

from itilflow.notifications import NotificationError, asend_chat, render_message
from tests.support.http_sink import HttpSink
from tests.support.notifications import make_context, make_incident


def write_config(directory: Path, sink: HttpSink) -> Path:
    """An apprise YAML config routing tags to paths of the sink."""
    path = directory / "apprise.yml"
    path.write_text(
        "urls:\n"
        f"  - {sink.apprise_url('/ops')}:\n"
        "      tag: ops, p1\n"
        f"  - {sink.apprise_url('/dba')}:\n"
        "      tag: dba\n",
        encoding="utf-8",
    )
    return path


async def test_posts_title_and_body_to_a_direct_url(http_sink: HttpSink) -> None:
    await asend_chat(
        title="P1 opened",
        body="line one\nline two",
        tags=(),
        config=None,
        urls=[http_sink.apprise_url("/hook")],
    )

    [request] = http_sink.wait_for(1)
    assert request.path == "/hook"
    assert request.json["title"] == "P1 opened"
    assert request.json["message"] == "line one\nline two"
    assert request.json["type"] == "info"
    assert request.headers["User-Agent"] == "itilflow"


async def test_routes_by_tag_through_the_config(http_sink: HttpSink, tmp_path: Path) -> None:
    config = write_config(tmp_path, http_sink)

    await asend_chat(title="t", body="b", tags=["dba"], config=config)

    [request] = http_sink.wait_for(1)
    assert request.path == "/dba"


async def test_a_service_matching_two_tags_is_notified_once(
    http_sink: HttpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, http_sink)

    await asend_chat(title="t", body="b", tags=["ops", "p1", "dba"], config=str(config))

    assert sorted(r.path for r in http_sink.wait_for(2)) == ["/dba", "/ops"]
    assert len(http_sink.requests) == 2


async def test_direct_urls_are_notified_along_with_tags(
    http_sink: HttpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, http_sink)

    await asend_chat(
        title="t", body="b", tags=["dba"], config=config, urls=[http_sink.apprise_url("/direct")]
    )

    assert sorted(r.path for r in http_sink.wait_for(2)) == ["/dba", "/direct"]


async def test_a_rendered_message_arrives_without_markup(http_sink: HttpSink) -> None:
    incident = make_incident(title="<script>alert(1)</script>", assignee="张伟")
    context = make_context("incident_opened", incident=incident)
    message = render_message("incident_opened", "zh_CN", context)

    await asend_chat(
        title=message.chat_title,
        body=message.chat_body,
        tags=(),
        config=None,
        urls=[http_sink.apprise_url()],
    )

    [request] = http_sink.wait_for(1)
    assert request.json["title"] == "[P1] 新事件 INC0001：‹script›alert(1)‹/script›"
    assert "处理人：张伟（DBA）" in request.json["message"]
    assert "<" not in request.json["title"] + request.json["message"]


async def test_server_error_raises(http_sink: HttpSink) -> None:
    http_sink.status = 500

    with pytest.raises(NotificationError, match="error=500"):
        await asend_chat(title="t", body="b", tags=(), config=None, urls=[http_sink.apprise_url()])

    assert len(http_sink.requests) == 1


async def test_unreachable_service_raises(http_sink: HttpSink) -> None:
    url = http_sink.apprise_url()
    http_sink.stop()

    with pytest.raises(NotificationError, match="failed"):
        await asend_chat(title="t", body="b", tags=(), config=None, urls=[url])


async def test_unmatched_tag_raises_before_sending(http_sink: HttpSink, tmp_path: Path) -> None:
    config = write_config(tmp_path, http_sink)

    with pytest.raises(NotificationError, match=r"\['network', 'storage'\] match no service"):
        await asend_chat(title="t", body="b", tags=["dba", "network", "storage"], config=config)

    assert http_sink.requests == []


async def test_a_service_tagged_always_does_not_hide_a_missing_route(
    http_sink: HttpSink, tmp_path: Path
) -> None:
    config = tmp_path / "apprise.yml"
    config.write_text(f"urls:\n  - {http_sink.apprise_url()}:\n      tag: always\n")

    with pytest.raises(NotificationError, match="'dba'"):
        await asend_chat(title="t", body="b", tags=["dba"], config=config)


async def test_missing_config_file_raises(tmp_path: Path) -> None:
    with pytest.raises(NotificationError, match="does not exist"):
        await asend_chat(title="t", body="b", tags=["ops"], config=tmp_path / "missing.yml")


async def test_config_without_services_raises(tmp_path: Path) -> None:
    config = tmp_path / "apprise.yml"
    config.write_text("urls: [\n")  # broken YAML: apprise only logs it

    with pytest.raises(NotificationError, match="no usable service"):
        await asend_chat(title="t", body="b", tags=["ops"], config=config)


async def test_unusable_url_raises() -> None:
    with pytest.raises(NotificationError, match="nosuchservice://"):
        await asend_chat(
            title="t", body="b", tags=(), config=None, urls=["nosuchservice://token@host"]
        )


async def test_tags_without_config_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="config"):
        await asend_chat(title="t", body="b", tags=["ops"], config=None)


async def test_nothing_to_notify_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nothing to notify"):
        await asend_chat(title="t", body="b", tags=(), config=None)


@pytest.mark.parametrize("tag", ["2:ops", "ops:3", "ops, dba", "ops dba", ""])
async def test_tags_with_apprise_syntax_are_refused(tag: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chat tags"):
        await asend_chat(title="t", body="b", tags=[tag], config=tmp_path / "apprise.yml")
