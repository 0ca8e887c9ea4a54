"""The vocabulary every room speaks: the internal request/response, the error tree, the
outcome record.

Nothing here imports any other part of the gateway."""
