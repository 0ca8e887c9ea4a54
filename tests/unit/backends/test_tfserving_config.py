"""Flags and config files of the TF Serving side: no server, no TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.tfserving.aux_config import (
    BatchingParameters,
    MonitoringConfig,
    parse_batching_parameters,
    parse_monitoring_config,
    render_batching_parameters,
    render_monitoring_config,
)
from backends.tfserving.flags import FlagError, parse_flags, validate
from backends.tfserving.model_config import (
    ConfigError,
    ModelConfig,
    VersionPolicy,
    parse_model_config,
    render_model_config,
)


def test_flags_accept_both_spellings_and_bare_booleans() -> None:
    flags = parse_flags(
        [
            *("--port=9000", "--rest_api_port", "9001", "--enable_batching"),
            *("--model_name", "m", "--model_base_path=/models/m"),
            *("--file_system_poll_wait_seconds", "3"),
        ]
    )
    assert (flags.port, flags.rest_api_port, flags.enable_batching) == (9000, 9001, True)
    assert (flags.model_name, flags.model_base_path) == ("m", "/models/m")
    assert flags.file_system_poll_wait_seconds == 3
    assert flags.warnings == []


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), ("0", False)])
def test_boolean_flag_values(text: str, expected: bool) -> None:
    assert parse_flags([f"--enable_batching={text}"]).enable_batching is expected


def test_unknown_tf_serving_flags_warn_and_do_not_swallow_the_next_flag() -> None:
    flags = parse_flags(
        ["--xla_cpu_compilation_enabled", "--port=1", "--grpc_channel_arguments=a=1"]
    )
    assert flags.port == 1
    assert len(flags.warnings) == 2
    assert "--xla_cpu_compilation_enabled" in flags.warnings[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--port=abc"], "--port takes an integer"),
        (["--enable_batching=maybe"], "--enable_batching takes true or false"),
        (["--model_config_file"], "--model_config_file needs a value"),
    ],
)
def test_bad_flag_values_name_the_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(FlagError, match=needle):
        parse_flags(argv)


def test_validate_requires_exactly_one_model_source() -> None:
    with pytest.raises(FlagError, match="either --model_config_file or --model_base_path"):
        validate(parse_flags(["--port=1"]))
    with pytest.raises(FlagError, match="cannot both"):
        validate(parse_flags(["--model_config_file=a", "--model_base_path=b"]))


CONFIG = """
model_config_list {
  config {
    name: "latest3" base_path: "/m/a" model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 3 } }
  }
  config { name: "every" base_path: "/m/b" model_version_policy { all {} } }
  config {
    name: "pinned" base_path: "/m/c"
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 3 }
  }
  config { name: "plain" base_path: "/m/d" }
}
"""


def test_model_config_parses_every_version_policy_and_labels() -> None:
    models = {m.name: m for m in parse_model_config(CONFIG)}
    assert models["latest3"].policy == VersionPolicy("latest", num_versions=3)
    assert models["every"].policy.kind == "all"
    assert models["pinned"].policy == VersionPolicy("specific", versions=(1, 3))
    assert dict(models["pinned"].labels) == {"stable": 1, "canary": 3}
    assert models["plain"].policy == VersionPolicy()
    assert models["plain"].base_path == Path("/m/d")


@pytest.mark.parametrize(
    ("policy", "on_disk", "served"),
    [
        (VersionPolicy(), [1, 2, 5], {5}),
        (VersionPolicy("latest", num_versions=2), [1, 2, 5], {2, 5}),
        (VersionPolicy("all"), [1, 2, 5], {1, 2, 5}),
        (VersionPolicy("specific", versions=(1, 3)), [1, 2, 5], {1}),
        (VersionPolicy(), [], set()),
    ],
)
def test_version_policies_select(
    policy: VersionPolicy, on_disk: list[int], served: set[int]
) -> None:
    assert policy.select(on_disk) == served


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model_config_list { config { name: 'a' } }", "has no base_path"),
        (
            "model_config_list { config { name: 'a' base_path: '/x' model_platform: 'onnx' } }",
            "onnx",
        ),
        ("model_config_list { config { nam: 'a' } }", "nam"),
        (
            "model_config_list { config { name: 'a' base_path: '/x' } "
            "config { name: 'a' base_path: '/y' } }",
            "unique",
        ),
    ],
)
def test_bad_model_configs_say_why(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_model_config(text)


def test_rendered_model_config_is_what_tf_serving_reads(tmp_path: Path) -> None:
    models = [
        ModelConfig("digits-mlp", tmp_path / "tensorflow" / "digits-mlp"),
        ModelConfig("x", tmp_path / "x", policy=VersionPolicy("all"), labels={"stable": 2}),
    ]
    text = render_model_config(models)
    assert 'name: "digits-mlp"' in text
    assert f'base_path: "{tmp_path.resolve()}/tensorflow/digits-mlp"' in text
    assert 'model_platform: "tensorflow"' in text
    assert parse_model_config(text) == [
        ModelConfig("digits-mlp", (tmp_path / "tensorflow" / "digits-mlp").resolve()),
        ModelConfig(
            "x", (tmp_path / "x").resolve(), policy=VersionPolicy("all"), labels={"stable": 2}
        ),
    ]


def test_batching_parameters_round_trip_in_tf_serving_text_format() -> None:
    text = render_batching_parameters(BatchingParameters(8, 2000, 100, 1))
    assert "max_batch_size {\n  value: 8\n}" in text
    assert "batch_timeout_micros {\n  value: 2000\n}" in text
    assert parse_batching_parameters(text) == BatchingParameters(8, 2000, 100, 1)


def test_batching_parameters_keep_tf_serving_defaults_and_accept_its_other_fields() -> None:
    params = parse_batching_parameters(
        "max_batch_size { value: 16 } allowed_batch_sizes: 8 allowed_batch_sizes: 16 "
        "pad_variable_length_inputs { value: true } thread_pool_name { value: 'p' }"
    )
    assert params == BatchingParameters(max_batch_size=16)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_batch_size { value: 0 }", "max_batch_size must be positive"),
        ("max_batch: 3", "max_batch"),
    ],
)
def test_bad_batching_parameters(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_batching_parameters(text)


def test_monitoring_config_round_trip() -> None:
    text = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
    assert parse_monitoring_config(text) == MonitoringConfig(True, "/monitoring/prometheus/metrics")
    rendered = render_monitoring_config(MonitoringConfig(True, "/m"))
    assert parse_monitoring_config(rendered) == MonitoringConfig(True, "/m")
    assert parse_monitoring_config("") == MonitoringConfig(False)
