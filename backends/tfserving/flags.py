"""`tensorflow_model_server`'s command line, parsed the way the real binary accepts it.

Both `--flag=value` and `--flag value` work; booleans also take a bare `--flag`. Flags of
the real binary this server does not implement are accepted and reported as warnings,
so a command line written for TF Serving runs here unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class FlagError(ValueError):
    """A malformed command line; the message names the flag."""


@dataclass
class ServerFlags:
    """The flags this server honours (names and defaults as in TF Serving)."""

    port: int = 8500
    rest_api_port: int = 0
    rest_api_num_threads: int = 0
    rest_api_timeout_in_ms: int = 30000
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    warnings: list[str] = field(default_factory=list)


_FIELDS = {f.name: f for f in dataclasses.fields(ServerFlags) if f.name != "warnings"}


def parse_flags(argv: Sequence[str]) -> ServerFlags:
    """Parse a TF Serving command line (without the program name)."""
    flags = ServerFlags()
    args = list(argv)
    while args:
        token = args.pop(0)
        if not token.startswith("-") or token in ("-", "--"):
            flags.warnings.append(f"ignoring positional argument {token!r}")
            continue
        name, value = _split(token, args)
        _assign(flags, name, value)
    return flags


def _split(token: str, rest: list[str]) -> tuple[str, str | None]:
    """(name, value) of one flag; consumes the next token for `--flag value`."""
    body = token.lstrip("-")
    if "=" in body:
        name, value = body.split("=", 1)
        return name, value
    known = _FIELDS.get(body)
    is_bool = known is not None and known.type in (bool, "bool")
    if is_bool or not rest or rest[0].startswith("--"):
        return body, None
    return body, rest.pop(0)


def _assign(flags: ServerFlags, name: str, value: str | None) -> None:
    spec = _FIELDS.get(name)
    if spec is None:
        flags.warnings.append(f"flag --{name} is not implemented by the bundled server; ignored")
        return
    setattr(flags, name, _convert(name, str(spec.type), value))


def _convert(name: str, kind: str, value: str | None) -> int | bool | str:
    if kind == "bool":
        if value is None or value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise FlagError(f"--{name} takes true or false, got {value!r}")
    if value is None:
        raise FlagError(f"--{name} needs a value")
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise FlagError(f"--{name} takes an integer, got {value!r}") from None
    return value


def validate(flags: ServerFlags, any_port: bool = False) -> None:
    """Cross-flag rules the real binary enforces at start; `any_port` (the launcher's
    ports-file mode) lets 0 mean "a port the OS picks"."""
    if not flags.model_config_file and not flags.model_base_path:
        raise FlagError("either --model_config_file or --model_base_path must be given")
    if flags.model_config_file and flags.model_base_path:
        raise FlagError("--model_config_file and --model_base_path cannot both be given")
    if flags.batching_parameters_file and not flags.enable_batching:
        flags.warnings.append("--batching_parameters_file is ignored without --enable_batching")
    if flags.port <= 0 and flags.rest_api_port <= 0 and not any_port:
        raise FlagError("--port must be a positive port number")
