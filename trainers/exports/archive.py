"""Package a TorchScript export into a TorchServe .mar with the dualserve handler."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from trainers.errors import ExportError
from trainers.manifest import Signature

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "backends" / "torchserve" / "handler.py"
WIRE_DIR = REPO / "wire"
# Modules the handler imports from its own folder inside the archive: the wire formats it
# shares with the gateway (`wire/`), packed flat next to it.
HANDLER_MODULES = (
    WIRE_DIR / "tensor_frames.py",  # the gateway's tensor frames
    WIRE_DIR / "tfserving_json.py",  # TF Serving's JSON format
    WIRE_DIR / "json_text.py",  # ... and the JSON text it reads and writes
)
SIGNATURE_FILE = "signature.json"


def build_mar(
    model_pt: Path, model_name: str, version: int, signature: Signature, out_file: Path
) -> Path:
    """Run torch-model-archiver on `model_pt` + handler + signature.json into `out_file`."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dualserve-mar-") as tmp:
        staging = Path(tmp)
        signature_file = staging / SIGNATURE_FILE
        signature_file.write_text(json.dumps(signature.model_dump(), indent=2))
        command = [
            sys.executable, "-m", "model_archiver.model_packaging",
            "--model-name", model_name,
            "--version", str(version),
            "--serialized-file", str(model_pt),
            "--handler", str(HANDLER),
            "--extra-files", ",".join([str(signature_file), *map(str, HANDLER_MODULES)]),
            "--export-path", str(staging),
            "--force",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        produced = staging / f"{model_name}.mar"
        if result.returncode != 0 or not produced.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise ExportError(f"torch-model-archiver failed for {model_name}: {' '.join(tail)}")
        shutil.move(produced, out_file)
    return out_file
