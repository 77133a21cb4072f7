"""The event stream parser, on the lines a job events stream sends."""

from __future__ import annotations

from transcribe_client.sse import EventParser, ServerSentEvent


def parse(lines: list[str]) -> list[ServerSentEvent]:
    parser = EventParser()
    return [event for line in lines if (event := parser.feed(line)) is not None]


def test_named_events_with_ids_comments_and_multiline_data() -> None:
    events = parse(
        [
            ": keep-alive", "",
            "event: status", "id: 1-0", 'data: {"status":', 'data: "queued"}', "",
            "retry: 1000", "event:progress", "data:{}", "",
            "data: unnamed", "",
        ]
    )  # fmt: skip
    assert events == [
        ServerSentEvent("status", '{"status":\n"queued"}', "1-0"),
        ServerSentEvent("progress", "{}", "1-0"),
        ServerSentEvent("message", "unnamed", "1-0"),
    ]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert parse(["event: status", "id: 2-0", "", "data: x", ""]) == [
        ServerSentEvent("message", "x", "2-0")
    ]
