"""`dualserve`: bring the serving stack up and down, and say what runs.

Heavy imports (TensorFlow, torch) stay out of this module: `dualserve status` must
answer at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dualserve.keys import app as keys_app

if TYPE_CHECKING:
    from pydantic import BaseModel

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Serve one model from TensorFlow Serving and TorchServe, side by side.",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"dualserve {version('dualserve')}")
        except PackageNotFoundError:  # a source tree that was never installed
            typer.echo("dualserve: not installed (no package metadata); run scripts/setup.sh")
            raise typer.Exit(1) from None
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="print the installed version (package metadata) and exit",
        ),
    ] = False,
) -> None:
    pass


ModelStoreOption = Annotated[
    Path, typer.Option(envvar="DUALSERVE_MODEL_STORE", help="the trainers' model store")
]
RunDirOption = Annotated[
    Path, typer.Option(envvar="DUALSERVE_RUN_DIR", help="pid files, logs and state.json")
]


def _paths(model_store: Path, run_dir: Path) -> Any:
    from dualserve.stack import StackPaths

    return StackPaths(model_store=model_store, run_dir=run_dir.resolve())


def parse_labels(values: list[str]) -> dict[str, dict[str, int]]:
    """`MODEL:LABEL=VERSION` options as model -> label -> version."""
    labels: dict[str, dict[str, int]] = {}
    for value in values:
        model, _, rest = value.partition(":")
        label, _, version = rest.partition("=")
        if not (model and label and version.isdigit() and int(version) > 0):
            raise typer.BadParameter(
                f"'{value}' is not MODEL:LABEL=VERSION (e.g. digits-mlp:stable=1)"
            )
        labels.setdefault(model, {})[label] = int(version)
    return labels


def parse_capture(values: list[str]) -> dict[str, float]:
    """`MODEL=SHARE` options (SHARE in 0..1, or a percentage `20%`) as model -> share."""
    shares: dict[str, float] = {}
    for value in values:
        model, _, text = value.partition("=")
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            share = -1.0
        if not model or not 0.0 <= share <= 1.0:
            raise typer.BadParameter(
                f"'{value}' is not MODEL=SHARE with SHARE in 0..1 (e.g. digits-mlp=0.2)"
            )
        shares[model] = share
    return shares


@app.command()
def up(
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for readiness")] = 180.0,
    gateway_workers: Annotated[
        int,
        typer.Option(min=1, envvar="DUALSERVE_WORKERS", help="gateway worker processes"),
    ] = 1,
    label: Annotated[
        list[str] | None,
        typer.Option(
            help="a TF Serving version label, MODEL:LABEL=VERSION (repeatable); given to"
            " TF Serving's model config and the gateway alike. None by default"
        ),
    ] = None,
    pytorch_server: Annotated[
        str,
        typer.Option(
            help="the server the gateway's pytorch arm calls: torchserve (the TorchScript"
            " .mar) or oip (the .pt2 export on the bundled Open Inference Protocol server)"
        ),
    ] = "torchserve",
    capture: Annotated[
        list[str] | None,
        typer.Option(
            help="capture a share of a model's requests for `dualserve replay`, MODEL=SHARE"
            " (repeatable; sticky by routing key; files in RUN_DIR/gateway/capture/). Off by"
            " default"
        ),
    ] = None,
) -> None:
    """Start both backends from the model store and wait until every model is ready
    (and the bundled OIP server for the `.pt2` exports, where the store holds some)."""
    from backends.process import LaunchError
    from dualserve import stack
    from trainers.errors import ManifestError

    console = Console()
    labels = parse_labels(label or [])
    if pytorch_server not in ("torchserve", "oip"):
        console.print(
            f"[red]error:[/] --pytorch-server must be torchserve or oip, got {pytorch_server!r}"
        )
        raise typer.Exit(code=2)
    shares = parse_capture(capture or [])
    paths = _paths(model_store, run_dir)
    running = stack.status(paths).running()
    if running:
        console.print("already running (use `dualserve down` first):")
        _print_status(console, running)
        return
    try:
        with console.status("starting TF Serving and TorchServe, waiting for every model"):
            state = stack.up(
                paths,
                timeout=timeout,
                gateway_workers=gateway_workers,
                version_labels=labels,
                pytorch_server="oip" if pytorch_server == "oip" else "torchserve",
                capture=shares,
            )
    except (LaunchError, ManifestError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    _print_status(console, state.parts())
    console.print(f"addresses written to {paths.state_file}")


@app.command()
def down(
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
) -> None:
    """Stop everything `dualserve up` started (tracked by pid files)."""
    from dualserve import stack

    stopped = stack.down(_paths(model_store, run_dir))
    Console().print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Show what runs and where."""
    from dualserve import stack

    paths = _paths(model_store, run_dir)
    state = stack.status(paths)
    views = _views(paths, state)
    if as_json:
        document = state.as_document()
        if views:
            document["models"] = {view.model: view.as_json() for view in views}
        typer.echo(json.dumps(document, indent=2))
        return
    console = Console()
    running = state.running()
    if not running:
        console.print("nothing is running (start it with `dualserve up`)")
        return
    _print_status(console, running)
    if views:
        _print_models(console, views)


def _views(paths: Any, state: Any) -> list[Any]:
    """The models as the running backends serve them (`state`: a `StackStatus`); [] unless
    both run."""
    from dualserve.models import model_views

    if state.tensorflow is None or state.pytorch is None:
        return []
    return model_views(paths.model_store, paths.run_dir, state)


@app.command()
def models(
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Per model and framework: the versions each backend serves (since when), and the
    version routed to requests that name none (the newest both serve), since when."""
    from dualserve import stack

    paths = _paths(model_store, run_dir)
    views = _views(paths, stack.status(paths))
    if as_json:
        typer.echo(json.dumps({view.model: view.as_json() for view in views}, indent=2))
        return
    console = Console()
    if not views:
        console.print("the backends are not running (start them with `dualserve up`)")
        raise typer.Exit(code=1)
    _print_models(console, views)


@app.command()
def retire(
    model: Annotated[str, typer.Argument(help="the model, e.g. digits-mlp")],
    version: Annotated[int, typer.Argument(min=1, help="the version to take out of both backends")],
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
) -> None:
    """Take a version out of TF Serving (its directory moves to <store>/retired/) and
    TorchServe (unregistered), never the routed one; the gateway follows within a second."""
    from dualserve import stack
    from dualserve.models import RetireError
    from dualserve.models import retire as retire_version

    console = Console()
    paths = _paths(model_store, run_dir)
    state = stack.status(paths)
    if state.tensorflow is None or state.pytorch is None:
        console.print("[red]error:[/] the backends are not running")
        raise typer.Exit(code=1)
    try:
        done = retire_version(paths.model_store.resolve(), state, model, version)
    except RetireError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    for line in done:
        console.print(line, soft_wrap=True)
    _record_retire(paths.run_dir, model, version, done, console)


def _record_retire(
    run_dir: Path, model: str, version: int, done: list[str], console: Console
) -> None:
    """The `retire` model event; a database that cannot take it is a warning (the version
    is retired either way)."""
    from dualserve.promotion import record_retire

    try:
        record_retire(_log_url(run_dir), model, version, done)
    except Exception as exc:  # the event is the record, not the retirement
        console.print(f"[yellow]warning:[/] the retire event was not recorded: {exc}")


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="the model, e.g. digits-mlp")],
    arm: Annotated[str, typer.Argument(help="the arm's name, e.g. tf-v2 (or tensorflow)")],
    reason: Annotated[str, typer.Option(help="recorded with the promote event")] = "",
    force: Annotated[
        bool, typer.Option("--force", help="even while an experiment on the model runs")
    ] = False,
    run_dir: RunDirOption = Path("run"),
) -> None:
    """Make ARM the model's default (the running gateway's `promoted` policy layer).
    Refused while an experiment on the model runs, unless its rollout brought ARM to 100%
    (the experiment is then ended) or --force."""
    from dualserve.promotion import PromoteError
    from dualserve.promotion import promote as promote_arm

    console = Console()
    try:
        answer = promote_arm(run_dir.resolve(), model, arm, reason, force)
    except PromoteError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    event = answer["event"]
    ended = event["details"].get("ended_experiment")
    console.print(f"{model}: {arm} promoted" + (f" (ended experiment {ended})" if ended else ""))


@app.command()
def events(
    model: Annotated[str | None, typer.Argument(help="one model (default: every model)")] = None,
    db: Annotated[str | None, typer.Option(help="sqlite:///PATH or postgresql://...")] = None,
    run_dir: RunDirOption = Path("run"),
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Models' promotions and retirements, oldest first, from the experiments database."""
    from datetime import UTC, datetime

    from dualserve.promotion import events as model_events

    listed = model_events(db or _log_url(run_dir), model)
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    table = Table(title="model events")
    for column in ("time (UTC)", "model", "action", "arm / version", "by", "reason"):
        table.add_column(column)
    for e in listed:
        when = datetime.fromtimestamp(e["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        what = e["arm"] or f"v{e['version']}"
        table.add_row(when, e["model"], e["action"], what, e["set_by"], e["reason"])
    Console().print(table)


def _print_models(console: Console, views: list[Any]) -> None:
    from datetime import datetime

    def when(epoch: float | None) -> str:
        return "" if epoch is None else datetime.fromtimestamp(epoch).isoformat(timespec="seconds")

    table = Table(title="models")
    for column in ("model", "framework", "serves (since)", "routed (since)"):
        table.add_column(column)
    for view in views:
        routed = "" if view.routed is None else f"v{view.routed} ({when(view.routed_since)})"
        for framework, versions in view.served.items():
            since = view.since.get(framework, {})
            serves = ", ".join(f"v{v} ({when(since.get(str(v)))})" for v in versions) or "none"
            table.add_row(view.model, framework, serves, routed)
    console.print(table)


experiment_app = typer.Typer(help="A/B experiments: reports from the prediction log.")
app.add_typer(experiment_app, name="experiment")
app.add_typer(keys_app, name="keys")


def _log_url(run_dir: Path) -> str:
    """The gateway's log: its configured database_url, else its SQLite file."""
    import yaml

    config_file = run_dir / "gateway" / "gateway.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    section = (config or {}).get("experiments") or {}
    if section.get("database_url"):
        return str(section["database_url"])
    data_dir = Path(section.get("data_dir") or run_dir / "gateway" / "data")
    return f"sqlite:///{(data_dir / 'predictions.sqlite3').resolve()}"


DbOption = Annotated[str | None, typer.Option(help="sqlite:///PATH or postgresql://...")]


@experiment_app.command("report")
def experiment_report(
    experiment: Annotated[str, typer.Argument(help="experiment id, e.g. digits-mlp-ab")],
    db: DbOption = None,
    run_dir: RunDirOption = Path("run"),
    out: Annotated[Path, typer.Option(help="reports folder")] = Path("reports/experiments"),
) -> None:
    """Write the experiment's analysis as Markdown and HTML with plots."""
    from gateway.experiments.log.store import open_store
    from gateway.experiments.report import write_files
    from gateway.experiments.stats.analysis import analyse_store

    console = Console()
    url = db or _log_url(run_dir)
    store = open_store(url, None)
    try:  # aggregates and histograms from the database, never its rows (issue 23)
        events = store.events(experiment)
        result = analyse_store(store, experiment, None, events)
        histograms = store.histograms(experiment, list(result["arms"]))
    finally:
        store.close()
    if not histograms.rows and not events:
        console.print(f"[red]error:[/] no experiment '{experiment}' in {url}", soft_wrap=True)
        raise typer.Exit(code=1)
    md, html = write_files(result, histograms, out / experiment)
    console.print(f"{histograms.rows} log records -> {md} and {html}")


@experiment_app.command("status")
def experiment_status(
    experiment: Annotated[str, typer.Argument(help="experiment id, e.g. digits-mlp-ab")],
    db: DbOption = None,
    run_dir: RunDirOption = Path("run"),
    as_json: Annotated[bool, typer.Option("--json", help="the whole analysis as JSON")] = False,
) -> None:
    """The decision, the sample-ratio check, the differences and the rollout's steps, read
    offline from the prediction log."""
    from rich.markdown import Markdown

    from gateway.experiments.log.store import open_store
    from gateway.experiments.report import status_markdown
    from gateway.experiments.stats.analysis import analyse_store

    console = Console()
    url = db or _log_url(run_dir)
    store = open_store(url, None)
    try:  # the database's aggregates: memory sized by units, not by the log (issue 23)
        events = store.events(experiment)
        result = analyse_store(store, experiment, None, events)
    finally:
        store.close()
    if not events and not result["arms"]:
        console.print(f"[red]error:[/] no experiment '{experiment}' in {url}", soft_wrap=True)
        raise typer.Exit(code=1)
    if as_json:
        console.print_json(json.dumps(result))
    else:
        console.print(Markdown(status_markdown(result)))


@app.command()
def replay(
    capture: Annotated[
        Path, typer.Argument(help="a capture folder (run/gateway/capture) or one .parquet file")
    ],
    arm: Annotated[
        list[str] | None,
        typer.Option(
            help="an arm to replay against, FRAMEWORK[:VERSION] or an arm's name (repeatable)"
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="the model to replay (needed when the capture has several)")
    ] = None,
    gateway: Annotated[
        str | None, typer.Option(help="the gateway's REST URL (default: from run/state.json)")
    ] = None,
    run_dir: RunDirOption = Path("run"),
    pace: Annotated[
        str, typer.Option(help="'full' (as fast as --concurrency allows) or 'recorded'")
    ] = "full",
    speed: Annotated[float, typer.Option(min=0.001, help="recorded pace sped up by this")] = 1.0,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight at most")] = 8,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N requests")] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV/Parquet of request_id,label (default: the gateway's feedback)"),
    ] = None,
    db: DbOption = None,
    api_key: Annotated[str | None, typer.Option(envvar="DUALSERVE_API_KEY")] = None,
    out: Annotated[Path | None, typer.Option(help="report folder")] = None,
    direct: Annotated[
        bool, typer.Option(help="straight to the backends (from run/state.json), not the gateway")
    ] = False,
) -> None:
    """Re-send captured requests to arms through the gateway (pinned), or straight to the
    backends, and judge them against the captured answers: agreement, noise floor,
    McNemar, latency, shift."""
    import time as _time

    from gateway.capture.arms import parse_arm
    from gateway.capture.reader import labels_from_file, labels_from_log, read_capture
    from gateway.capture.replay import replay_arms
    from gateway.capture.replay_report import judge, write_report

    console = Console()
    try:
        if pace not in ("full", "recorded"):
            raise ValueError(f"--pace must be 'full' or 'recorded', not {pace!r}")
        targets = [parse_arm(spec) for spec in arm or []]
        named = [t.name for t in targets if t.arm is not None]
        if direct and named:
            raise ValueError(f"--direct: {', '.join(named)} name arms; use FRAMEWORK[:VERSION]")
        frame = read_capture(capture)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    models = sorted(set(frame["model"]))
    if model is None and len(models) > 1:
        console.print(f"[red]error:[/] the capture holds {', '.join(models)}: name one (--model)")
        raise typer.Exit(code=2)
    frame = frame[frame["model"] == (model or models[0])].reset_index(drop=True)
    frame = frame.head(limit) if limit else frame
    if frame.empty:
        console.print(f"[red]error:[/] no captured request of {model} in {capture}")
        raise typer.Exit(code=2)
    url = gateway or ("" if direct else _gateway_url(run_dir, console))
    ids = [str(i) for i in frame["request_id"]]
    fed_back = labels_from_file(labels) if labels else labels_from_log(db or _log_url(run_dir), ids)
    headers = {"X-API-Key": api_key} if api_key else {}
    options = {"pace": pace, "speed": speed, "concurrency": concurrency, "headers": headers}
    if direct:
        options["direct"] = _backends(run_dir, console)
    with console.status(f"replaying {len(frame)} requests against {1 + len(targets)} arms"):
        floor, answers = replay_arms(url, frame, targets, **options)
    judgement = judge(frame, floor, answers, fed_back)
    folder = out or Path("reports") / f"replay-{_time.strftime('%Y%m%d-%H%M%S')}"
    paths = write_report(judgement, folder)
    for sentence in judgement.sentences.values() or ["no --arm given: only the noise floor"]:
        console.print(sentence, soft_wrap=True)
    console.print(f"report: {paths['html']} ({paths['markdown'].name}, {paths['json'].name})")


def _backends(run_dir: Path, console: Console) -> Any:
    """The running stack's backends for `replay --direct` (TorchServe's inference key read)."""
    from backends.torchserve.launcher import read_token
    from dualserve.run_state import read_state
    from gateway.capture.arms import Backends

    try:
        state = read_state(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/] no running stack in {run_dir} ({exc}): --direct needs one")
        raise typer.Exit(code=2) from None
    token = read_token(Path(state.pytorch.token_file), "inference")
    return Backends(state.tensorflow.rest, state.pytorch.inference, token)


def _gateway_url(run_dir: Path, console: Console) -> str:
    from dualserve.run_state import read_state

    try:
        return read_state(run_dir).gateway.rest
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/] no running stack in {run_dir} ({exc}); give --gateway")
        raise typer.Exit(code=2) from None


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def loadtest(ctx: typer.Context) -> None:
    """The Locust sweep and its report (`python -m loadtest --help` lists the options)."""
    from loadtest.__main__ import app as loadtest_app

    loadtest_app(args=ctx.args, prog_name="dualserve loadtest")


def _print_status(console: Console, parts: Mapping[str, BaseModel]) -> None:
    """One row per address of each running part (`dualserve.run_state` models)."""
    table = Table(title="dualserve")
    for column in ("backend", "pid", "endpoint", "address"):
        table.add_column(column)
    for backend, part in parts.items():
        fields = part.model_dump(mode="json")
        pid = str(fields.get("pid") or "")
        for key, value in fields.items():
            if key != "pid" and value is not None:
                table.add_row(backend, pid, key, str(value))
                backend, pid = "", ""
    console.print(table)


def main() -> None:
    app()
