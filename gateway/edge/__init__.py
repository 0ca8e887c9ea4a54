"""The edge guards: admission, credentials, rate limits, request limits, deadlines, drain,
and `boundary.Edge`, the one owner of admission, error counting and error shaping for
every transport.

They act on requests before any protocol decodes them; no protocol is imported here
(tests/unit/gateway/test_rooms.py)."""
