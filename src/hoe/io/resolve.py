"""Turn a model argument into a local folder: a folder path, a built-in name (:mod:`hoe.io.builtin_models`),
or a Hugging Face id.

The hub is contacted only when the argument is neither a folder nor a built-in name, so everything works with
``HF_HUB_OFFLINE=1`` as long as local paths or built-ins are used.
"""

from __future__ import annotations

from pathlib import Path

from hoe.errors import CheckpointError
from hoe.io.builtin_models import BUILTIN_MODELS


def resolve_model_dir(ref: str | Path, field: str = "base") -> Path:
    """Return the local folder holding the model or adapter named by ``ref``."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if str(ref) in BUILTIN_MODELS:
        return BUILTIN_MODELS[str(ref)]()
    if path.exists():
        raise CheckpointError(
            f"{str(ref)!r} is a file.",
            field=field,
            value=str(ref),
            fix="Pass the folder that holds the model.",
        )
    looks_like_id = str(ref).count("/") == 1 and not str(ref).startswith((".", "/", "~"))
    if not looks_like_id:
        raise CheckpointError(
            f"{str(ref)!r} is not an existing folder, a built-in model or a Hugging Face id (owner/name).",
            field=field,
            value=str(ref),
            fix=f"Pass a model folder, a built-in ({', '.join(sorted(BUILTIN_MODELS))}) or owner/name.",
        )
    return _download(str(ref), field)


def _download(repo_id: str, field: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]
        )
    except Exception as e:  # the hub raises many kinds: offline, 404, gated, network
        raise CheckpointError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub ({type(e).__name__}: {e}).",
            field=field,
            value=repo_id,
            fix="Pass a local folder, or check the id and your network (HF_HUB_OFFLINE=1 forbids downloads).",
        ) from None
    return Path(folder)


def stored_ref(ref: str | Path) -> str:
    """How a model reference is recorded: a local folder as an absolute path (found again from any
    directory); a built-in name or a Hugging Face id as given."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.is_dir() else str(ref)
