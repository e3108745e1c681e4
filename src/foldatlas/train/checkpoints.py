"""Resumable training checkpoints: modules and AdamW moments as safetensors, the step as JSON.

Never pickles: every tensor goes to one ``state.safetensors``, the step and the
run's configuration to ``state.json``; both are replaced atomically, the JSON
last, so a killed run resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from foldatlas.files import atomic_write_text

__all__ = ["save_training_state", "load_training_state", "has_training_state"]


def _named_params(modules: dict):
    for prefix, module in modules.items():
        if module is not None:
            for name, p in module.named_parameters():
                yield f"{prefix}.{name}", p


def save_training_state(path: str | Path, modules: dict, optimizer, step: int, config: dict) -> None:
    """Write a checkpoint of ``modules`` (name -> ``nn.Module`` or None) and ``optimizer``.

    Tensors shared between state-dict entries (tied weights) are stored once.
    """
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for prefix, module in modules.items():
        if module is None:
            continue
        for k, v in module.state_dict().items():
            if v.data_ptr() in seen:
                continue
            seen.add(v.data_ptr())
            tensors[f"{prefix}.{k}"] = v.contiguous()
    names = {id(p): n for n, p in _named_params(modules)}
    for p, st in optimizer.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"opt.{names[id(p)]}.{key}"] = st[key].contiguous()
        tensors[f"opt.{names[id(p)]}.step"] = st["step"].reshape(1).float()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(path / "state.safetensors")
    atomic_write_text(path / "state.json", json.dumps({"step": step, "config": config}, indent=2))


def has_training_state(path: str | Path) -> bool:
    """Whether ``path`` holds a complete checkpoint."""
    return (Path(path) / "state.json").is_file() and (Path(path) / "state.safetensors").is_file()


def load_training_state(path: str | Path, modules: dict, optimizer) -> int:
    """Restore ``modules`` and ``optimizer`` in place; return the step reached."""
    from safetensors.torch import load_file

    path = Path(path)
    tensors = load_file(str(path / "state.safetensors"))
    for prefix, module in modules.items():
        if module is None:
            continue
        own = module.state_dict()
        stored = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        missing, unexpected = module.load_state_dict(stored, strict=False)
        present = {own[k].data_ptr() for k in stored if k in own}
        untied = [k for k in missing if own[k].data_ptr() not in present]
        if unexpected or untied:
            raise RuntimeError(f"checkpoint {path} does not match '{prefix}': missing {untied}, "
                               f"unexpected {unexpected}")
    for name, p in _named_params(modules):
        if f"opt.{name}.exp_avg" in tensors:
            optimizer.state[p] = {"step": tensors[f"opt.{name}.step"].reshape(()).clone(),
                                  "exp_avg": tensors[f"opt.{name}.exp_avg"].to(p.device),
                                  "exp_avg_sq": tensors[f"opt.{name}.exp_avg_sq"].to(p.device)}
    return int(json.loads((path / "state.json").read_text())["step"])
