"""Triton model repositories for the PyTorch arm in production (GPU), rendered offline.

Two flavours of one layout, `<repository>/<model>/config.pbtxt` and
`<repository>/<model>/<version>/<file>` (Triton's docs/user_guide/model_repository.md):

- `libtorch/`: `platform: "pytorch_libtorch"`, the TorchScript file (`model.pt`), with
  Triton's dynamic batcher (`max_batch_size` 64, dims without the batch);
- `aoti/`: `platform: "torch_aoti"` (Triton 26.03 and later), the AOTInductor package
  (`model.pt2`) compiled for CUDA by `python -m trainers --aoti` on the GPU machine. Triton
  does not batch `torch_aoti` models yet: `max_batch_size: 0`, the batch is the first of
  the dims (-1), each request runs as it comes.

Tensor names are the gateway's contract (`input`; `probabilities`, `class`): the libtorch
backend takes the forward argument's name for an input and the keys of a `Dict[str,
Tensor]` answer for outputs; both flavours list tensors in the program's order (input;
probabilities, class). Versions keep the newest two (`latest { num_versions: 2 }`), as
TF Serving and the bundled OIP server do. `validate` parses a config with Triton's own
`model_config.proto` (`inference.ModelConfig`, from `gateway/_proto/triton.desc`); this
machine has no GPU, so no Triton runs here.

    python -m deploy.triton --model-store model_store --flavour libtorch --out DIR
copies the store's verified artifacts into a repository ready for `tritonserver
--model-repository DIR` (image `TRITON_IMAGE`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from google.protobuf import message_factory, text_format

from gateway._proto import triton
from trainers.architecture import ModelSpec
from trainers.manifest import Signature, load_manifest
from trainers.store import sha256_path

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:26.03-py3"
DEPLOY = Path(__file__).resolve().parent
FLAVOURS: dict[str, tuple[str, str]] = {
    "libtorch": ("pytorch_libtorch", "model.pt"),
    "aoti": ("torch_aoti", "model.pt2"),
}
"""flavour -> (Triton platform, the version directory's file)."""
MAX_BATCH_SIZE = 64
NUM_VERSIONS = 2
_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}
ModelConfig = message_factory.GetMessageClass(
    triton.POOL.FindMessageTypeByName("inference.ModelConfig")
)


def digits_signatures() -> dict[str, Signature]:
    """The signatures the trainers record for the bundled digits models."""
    from trainers.pipeline import signature_for

    return {
        f"digits-{arch}": signature_for(ModelSpec(arch, (8, 8), 10, 0.0, 1.0))
        for arch in ("cnn", "mlp")
    }


def model_config(model: str, flavour: str, signature: Signature) -> str:
    """The `config.pbtxt` of `model` in one flavour."""
    platform, filename = FLAVOURS[flavour]
    batched = flavour == "libtorch"
    lines = [
        f'name: "{model}"',
        f'platform: "{platform}"',
        f"max_batch_size: {MAX_BATCH_SIZE if batched else 0}",
        f'default_model_filename: "{filename}"',
        f"version_policy: {{ latest: {{ num_versions: {NUM_VERSIONS} }} }}",
        *_tensors("input", signature.inputs, batched),
        *_tensors("output", signature.outputs, batched),
        "instance_group [ { kind: KIND_GPU, count: 1 } ]",
    ]
    if batched:
        lines.append("dynamic_batching { max_queue_delay_microseconds: 500 }")
    return "\n".join(lines) + "\n"


def _tensors(kind: str, specs: list[Any], batched: bool) -> list[str]:
    entries = []
    for spec in specs:
        dims = spec.shape[1:] if batched else spec.shape
        if batched and not dims:  # a per-example scalar (`class`): Triton wants dims [ 1 ]
            dims, reshape = [1], " reshape: { shape: [ ] }"
        else:
            reshape = ""
        entries.append(
            f'  {{ name: "{spec.name}" data_type: {_TYPES[spec.dtype]} dims: {dims}{reshape} }}'
        )
    return [f"{kind} [", ",\n".join(entries), "]"]


def validate(text: str) -> Any:
    """Parse a `config.pbtxt` with Triton's `ModelConfig` message.

    Raises:
        google.protobuf.text_format.ParseError: naming the line and the field.
    """
    return text_format.Parse(text, ModelConfig())


def render_repositories(signatures: dict[str, Signature] | None = None) -> dict[Path, str]:
    """Every `config.pbtxt`, by path under deploy/triton/."""
    signatures = signatures or digits_signatures()
    return {
        DEPLOY / "triton" / flavour / model / "config.pbtxt": model_config(model, flavour, sig)
        for flavour in FLAVOURS
        for model, sig in sorted(signatures.items())
    }


def populate(store: Path, out: Path, flavour: str) -> list[Path]:
    """Copy each model's newest `NUM_VERSIONS` artifacts of `flavour` from the store into
    a repository at `out`, each checked against the manifest's sha256; write the configs.

    Raises:
        ValueError: an artifact does not match its sha256, or an AOTInductor package was
            compiled for another device than CUDA (Triton's `torch_aoti` here runs on GPU).
    """
    manifest, written = load_manifest(store), []
    for model, entry in sorted(manifest.models.items()):
        versions = sorted((int(v) for v in entry.versions), reverse=True)[:NUM_VERSIONS]
        for version in versions:
            source, digest = _artifact(entry.versions[str(version)], flavour)
            if source is None:
                continue
            if sha256_path(store / source) != digest:
                raise ValueError(f"{store / source} does not match its recorded sha256")
            target = out / model / str(version) / FLAVOURS[flavour][1]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store / source, target)
            written.append(target)
        signature = entry.versions[str(versions[0])].signature
        (out / model / "config.pbtxt").write_text(model_config(model, flavour, signature))
    return written


def _artifact(version: Any, flavour: str) -> tuple[str | None, str]:
    pytorch = version.frameworks.get("pytorch")
    if pytorch is None:
        return None, ""
    if flavour == "libtorch":
        return pytorch.artifact, pytorch.sha256
    if pytorch.aoti is None:
        return None, ""
    if pytorch.aoti.device != "cuda":
        raise ValueError(
            f"{pytorch.aoti.artifact} was compiled for {pytorch.aoti.device}; Triton's"
            " torch_aoti on GPU needs a package compiled on the GPU machine (trainers --aoti)"
        )
    return pytorch.aoti.artifact, pytorch.aoti.sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--flavour", choices=sorted(FLAVOURS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for path in populate(args.model_store, args.out, args.flavour):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
