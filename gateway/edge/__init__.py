"""The edge guards: admission, credentials, rate limits, request limits, deadlines, drain.

They act on requests before any protocol decodes them; no protocol is imported here."""
