from datetime import timedelta

import pytest

from itilflow.policies import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("3d", timedelta(days=3)),
        ("1d2h", timedelta(days=1, hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        (" 2H ", timedelta(hours=2)),
        ("1d 2h", timedelta(days=1, hours=2)),
        ("0", timedelta()),
        ("0m", timedelta()),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "", "h", "4", "4 hours", "2h1d", "1.5h", "-4h", "4w"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like '30m', '4h' or '3d'"):
        parse_duration(text)


def test_parse_duration_rejects_bare_numbers_with_a_reason() -> None:
    with pytest.raises(ValueError, match="a bare number has no unit"):
        parse_duration(30)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["15m", "4h", "3d", "1d2h", "1d2h3m4s", "0m"])
def test_format_duration_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
