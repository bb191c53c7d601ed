"""The zoo's own subcommands, beside LightningCLI's: ``list``, ``info``, ``export``, ``nfe-plot``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NoReturn

from zoo import hub
from zoo.cli_messages import UsageError
from zoo.hub import registry
from zoo.hub.export import ExportSettings, export_checkpoint

COMMANDS = ("list", "info", "export", "nfe-plot")


def run(args: list[str]) -> None:
    """Runs one of :data:`COMMANDS`; ``args[0]`` names it."""
    options = _parser().parse_args(args)
    options.handler(options)


class _Parser(argparse.ArgumentParser):
    """argparse that raises its errors (:class:`~zoo.cli_messages.UsageError`) for one-line reporting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoo", description="The pretrained registry of neural-ode-zoo.")
    commands = parser.add_subparsers(required=True)

    listing = commands.add_parser("list", help="names of the zoo's entries")
    listing.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'odenet-*'")
    listing.add_argument("--pretrained", action="store_true", help="only entries with weights")
    listing.set_defaults(handler=_list)

    info = commands.add_parser("info", help="the model card of an entry, as JSON")
    info.add_argument("name")
    info.set_defaults(handler=_info)

    export = commands.add_parser(
        "export", help="a Lightning checkpoint -> safetensors weights + model card, test metrics measured"
    )
    export.add_argument("checkpoint", type=Path)
    export.add_argument("--name", required=True, help="the zoo name, <family>-<dataset>")
    export.add_argument("--out", type=Path, help="folder to write to (default: $ZOO_HOME/registry)")
    export.add_argument("--recipe", type=Path, help="the training config (default: configs/<name>.yaml)")
    export.add_argument("--recipe-command", help="the training command, if not `zoo fit --config <recipe>`")
    export.add_argument("--data-dir", help="where the test data is (default: the DataModule's)")
    export.add_argument("--no-test", dest="run_test", action="store_false", help="write no metrics")
    export.add_argument("--notes", default="", help="text for the card")
    export.set_defaults(handler=_export)

    nfe = commands.add_parser("nfe-plot", help="NFE against training step of runs, as a PNG")
    nfe.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR",
                     help="a label and a run folder or its metrics.csv, e.g. ANODE=runs/x/version_0")
    nfe.add_argument("--out", type=Path, default=Path("nfe.png"))
    nfe.set_defaults(handler=_nfe_plot)
    return parser


def _list(options: argparse.Namespace) -> None:
    rows = [("name", "weights", "test", "params", "dataset", "source")]
    for name in hub.list_models(options.pattern, options.pretrained):
        entry = registry.summary(name)
        rows.append((
            name,
            "yes" if entry.trained else "-",
            _headline(entry.metrics),
            f"{entry.num_params:,}" if entry.num_params is not None else "-",
            entry.dataset,
            entry.source,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _headline(metrics: dict[str, float]) -> str:
    """The test metric ``zoo list`` shows: accuracy, a series model's MSE, or a flow's bits/dim or NLL."""
    for key, digits in (("test_acc", 4), ("test_mse", 5), ("test_bpd", 4), ("test_nll", 4)):
        if key in metrics:
            return f"{key.removeprefix('test_')} {metrics[key]:.{digits}f}"
    return "-"


def _info(options: argparse.Namespace) -> None:
    card = hub.info(options.name)
    data = card.as_dict() | {"source": card.source, "card_file": str(card.path) if card.path else None}
    print(json.dumps(data, indent=2))


def _export(options: argparse.Namespace) -> None:
    settings = ExportSettings(
        out_dir=options.out,
        recipe=options.recipe,
        recipe_command=options.recipe_command,
        run_test=options.run_test,
        data_dir=options.data_dir,
        notes=options.notes,
    )
    card = export_checkpoint(options.checkpoint, options.name, settings)
    print(f"wrote {card.path.parent / card.weights} (sha256 {card.sha256})")
    print(f"wrote {card.path}")
    for key, value in card.metrics.items():
        print(f"  {key}: {value}")


def _nfe_plot(options: argparse.Namespace) -> None:
    from zoo.pictures import save_nfe_plot

    runs = {}
    for item in options.runs:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise UsageError(f"nfe-plot: expected LABEL=RUN_DIR, got {item!r}")
        runs[label] = Path(path)
    print(f"wrote {save_nfe_plot(runs, options.out)}")
