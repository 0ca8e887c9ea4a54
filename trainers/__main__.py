"""`python -m trainers`: train one model in TensorFlow and/or PyTorch and export it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from trainers.data import DATASETS
from trainers.errors import TrainerError
from trainers.loop import Hyperparams

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    framework: Annotated[str, typer.Option(help="tf | torch | both")] = "both",
    model: Annotated[str, typer.Option(help="mlp | cnn")] = "mlp",
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: int = 0,
    dataset: Annotated[str, typer.Option(help=" | ".join(DATASETS))] = "digits",
    data_dir: Annotated[Path | None, typer.Option(help="folder with the IDX files")] = None,
    model_store: Annotated[Path, typer.Option(envvar="DUALSERVE_MODEL_STORE")] = Path(
        "model_store"
    ),
    runs_dir: Annotated[
        Path | None, typer.Option(help="write TensorBoard event logs for both frameworks here")
    ] = None,
    aoti: Annotated[
        bool,
        typer.Option(
            "--aoti/--no-aoti",
            help="also compile an AOTInductor package of the PyTorch build for this device "
            "(needs a C++ compiler; ~25 s per model on a 2-core CPU)",
        ),
    ] = False,
) -> None:
    """Train the same model on identical data, split, seed and hyper-parameters."""
    console = Console()
    _check_choice("--framework", framework, ("tf", "torch", "both"))
    _check_choice("--model", model, ("mlp", "cnn"))
    _check_choice("--dataset", dataset, DATASETS)
    from trainers.pipeline import TrainConfig, run_training
    from trainers.report import summary_table

    config = TrainConfig(
        framework=framework,
        arch=model,
        dataset=dataset,
        data_dir=data_dir,
        model_store=model_store,
        runs_dir=runs_dir,
        aoti=aoti,
        hyperparams=Hyperparams(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
    )
    try:
        entry = run_training(config, console)
    except TrainerError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(summary_table(config.model_name, entry))
    console.print(f"report: {Path(model_store) / (entry.report or '')}")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        Console(stderr=True).print(
            f"[red]error:[/] {option} must be one of {', '.join(choices)}, got {value!r}",
            soft_wrap=True,
        )
        raise typer.Exit(code=2)


if __name__ == "__main__":
    sys.exit(app())
