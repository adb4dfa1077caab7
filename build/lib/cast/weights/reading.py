"""Reading checkpoint files safely: sniff the bytes, check safetensors headers, torch.load(weights_only=True).

Files are read with safetensors, or `torch.load(weights_only=True)` with only `argparse.Namespace`
allow-listed (the DeiT file's `args`); there is no fallback to unsafe unpickling (spec §5.2, §8).
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..errors import CheckpointError
from .format import METADATA_KEY, split_extras

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)




def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a .safetensors / .pth / .pth.tar / .pt / .bin file safely; CheckpointError on any problem.

    A safetensors file in our format comes back as {"cast_explorer": header, "state_dict", "extras"};
    any other safetensors file as its flat tensor dict; torch files as the object they hold.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    with path.open("rb") as handle:
        head = handle.read(512)
    kind = _sniff(head)
    if kind == "safetensors":
        return _read_safetensors(path, size)
    if kind in ("zip", "pickle"):
        return _read_torch(path)
    if path.name.endswith(".safetensors") and kind == "unrecognised binary data":
        raise CheckpointError(f"{path} is not a readable safetensors file: its header is corrupt.")
    raise CheckpointError(f"{path} is not a checkpoint: it looks like {kind}.")


def _sniff(head: bytes) -> str:
    """What the first bytes of a file say it is."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # torch.save's default container
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # legacy torch.save, or a bare pickle
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
        if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
            return "a text file"
    except UnicodeDecodeError:
        pass
    return "unrecognised binary data"


def _read_safetensors(path: Path, size: int) -> dict[str, Any]:
    """Validate the header ourselves (no allocation from declared sizes), then load with safetensors."""
    with path.open("rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len > size - 8 or header_len > _MAX_SAFETENSORS_HEADER:
            raise CheckpointError(
                f"{path} has a corrupt safetensors header: it declares {header_len:,} header bytes but the "
                f"file has {size:,} bytes in all (truncated, or not a safetensors file)."
            )
        raw = handle.read(header_len)
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} has a corrupt safetensors header ({err}).") from err
    meta = header.pop("__metadata__", None) or {}
    data_bytes = size - 8 - header_len
    for name, info in header.items():
        _check_tensor_entry(path, name, info, data_bytes)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f"{path} could not be read as safetensors ({first_line(err)}).") from err
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        return tensors
    try:
        ours = json.loads(meta[METADATA_KEY])
    except ValueError as err:
        raise CheckpointError(f"{path}: the CAST Explorer metadata in its header is not valid JSON ({err}).") from err
    if not isinstance(ours, dict):
        raise CheckpointError(f"{path}: the CAST Explorer metadata in its header is not a JSON object.")
    model_tensors, extras = split_extras(tensors)
    return {METADATA_KEY: ours, "state_dict": model_tensors, "extras": extras}


def _check_tensor_entry(path: Path, name: str, info: Any, data_bytes: int) -> None:
    """One header entry: known dtype, sane shape, offsets inside the file and matching the shape."""
    try:
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        ok = dtype in _SAFETENSORS_ITEMSIZE and all(isinstance(d, int) and d >= 0 for d in shape)
        ok = ok and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path} has a corrupt safetensors header: entry {name!r} is malformed.")
    needed = math.prod(shape) * _SAFETENSORS_ITEMSIZE[dtype]
    if end > data_bytes:
        raise CheckpointError(
            f"{path}: tensor {name!r} (shape {list(shape)}, {format_bytes(needed)}) lies beyond the end of the file, "
            f"which holds only {format_bytes(data_bytes)} of data: the file is truncated or its header is corrupt."
        )
    if end - begin != needed:
        raise CheckpointError(
            f"{path} has a corrupt safetensors header: tensor {name!r} of shape {list(shape)} needs "
            f"{format_bytes(needed)} but the header gives it {format_bytes(end - begin)}."
        )


def _read_torch(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True; only argparse.Namespace is allow-listed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # noise, not a problem
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        blocked = re.search(r"GLOBAL ([\w.]+)|[Uu]nsupported global:? (?:GLOBAL )?([\w.]+)", text)
        if blocked:
            culprit = blocked.group(1) or blocked.group(2)
            raise CheckpointError(
                f"{path} was refused: it contains code or Python objects that are not allowed in a checkpoint "
                f"({culprit}). It was NOT executed. A checkpoint should hold only tensors and plain containers; "
                "open files only from sources you trust."
            ) from err
        detail = next((ln.strip() for ln in text.splitlines() if "Unsupported" in ln), first_line(err))
        raise CheckpointError(
            f"{path} was refused: it contains pickle content that is not allowed in a checkpoint ({detail}), "
            "possibly code. It was NOT executed. If it comes from a source you trust, re-save its weights "
            "with torch.save(state_dict, path)."
        ) from err
    except (EOFError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({first_line(err)}); download or copy it again."
        ) from err
    except Exception as err:
        raise CheckpointError(
            f"{path} could not be read as a PyTorch checkpoint ({type(err).__name__}: {first_line(err)})."
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dictionary of weights.")
    return obj


def first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def format_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"
