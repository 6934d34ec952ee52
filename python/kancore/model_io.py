"""Save and load a ``KAN`` as the kancore model file (the format in docs/model_format.md, format
versions 1 and 2; version 2 adds symbolic edges, and a file without them is written as version 1).

The file is safetensors (an 8-byte little-endian header length N, N bytes of JSON header, then the
raw little-endian tensor bytes), written and read here with NumPy alone so the format has no
runtime dependency; the C++ ``Network`` reads and writes the same files.

What a file cannot hold, and what loading therefore gives back:

* a C0 layer with ``variant="DCT"`` or ``"parallel_scan"`` is saved as its control-point table
  (``_table()``) and loads as ``variant="B-spline"`` (the same function; the original variant is
  recorded in the config's extra ``"variant"`` key for information);
* a B-spline layer must use the SiLU base activation (the format's forward); without
  ``enable_standalone_scale_spline`` its ``spline_scaler`` is saved as ones;
* ``grid_eps``/``grid_range`` (used only by later grid updates) travel as extra config keys.

Loading validates everything before building the model: header size and JSON, every tensor's
dtype, shape and byte range (inside the file, back to back, covering the data exactly), the
config against the tensors, and finite knots and domain affines. Any problem raises ValueError.
"""
from __future__ import annotations

import json
import math
import os
import stat
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .kan_layer import KANLayer
from .kan_linear import KANLinear, skip_initialisation
from .network import KAN
from .symbolic_edges import FUNCTIONS

FORMAT = "kancore.network"
FORMAT_VERSION = "2"  # the newest this module reads and writes
_VERSIONS = ("1", "2")
MAX_HEADER_BYTES = 16 * 1024 * 1024  # the C++ loader's limit, so both read what either writes
_DTYPES = {"float32": ("F32", np.dtype("<f4"), torch.float32),
           "float64": ("F64", np.dtype("<f8"), torch.float64)}
_RESERVED_METADATA = ("format", "format_version", "config")


# -- writing -------------------------------------------------------------------------------------

def _layers_of(model) -> Tuple[List[nn.Module], Optional[nn.ModuleList]]:
    if isinstance(model, KAN):
        return list(model.layers), (model.norms if model.layernorm else None)
    if isinstance(model, (KANLayer, KANLinear)):
        return [model], None
    if isinstance(model, nn.Sequential) and len(model) and all(isinstance(m, (KANLayer, KANLinear)) for m in model):
        return list(model), None
    raise TypeError("kancore.save expects a kancore.KAN, a KANLayer/KANLinear, or an nn.Sequential of "
                    f"them, got {type(model).__name__}")


def _layer_entry(j: int, layer) -> Tuple[dict, Dict[str, torch.Tensor]]:
    cfg, tensors = _numeric_entry(j, layer)
    if layer._symbolic_active():  # format version 2: the fixed edges, in the rows' order
        cfg["symbolic"] = [{"in": e.i, "out": e.o, "function": e.name} for e in layer.symbolic_edges()]
        tensors[f"layers.{j}.symbolic_affine"] = layer.symbolic.affine
    return cfg, tensors


def _numeric_entry(j: int, layer) -> Tuple[dict, Dict[str, torch.Tensor]]:
    p = f"layers.{j}."
    if isinstance(layer, KANLayer):
        fitted = layer.input_scale is not None
        cfg = {"kind": "c0", "in_features": layer.in_features, "out_features": layer.out_features,
               "num_control_points": layer.num_control_points, "spline_width": float(layer.spline_width),
               "fitted_domain": fitted, "variant": layer.variant}
        tensors = {p + "kan_weight": layer._table()}
        if fitted:
            tensors[p + "input_scale"] = layer.input_scale
            tensors[p + "input_offset"] = layer.input_offset
        return cfg, tensors
    if not layer._native_base():
        raise ValueError(f"layer {j}: the model file stores B-spline layers with the SiLU base activation, "
                         f"got {type(layer.base_activation).__name__}")
    cfg = {"kind": "bspline", "in_features": layer.in_features, "out_features": layer.out_features,
           "grid_size": layer.grid_size, "spline_order": layer.spline_order,
           "grid_eps": layer.grid_eps, "grid_range": list(layer.grid_range)}
    scaler = layer.spline_scaler if layer.enable_standalone_scale_spline else torch.ones_like(layer.base_weight)
    tensors = {p + "grid": layer.grid, p + "base_weight": layer.base_weight,
               p + "spline_weight": layer.spline_weight, p + "spline_scaler": scaler}
    return cfg, tensors


PathLike = Union[str, "os.PathLike[str]"]


def save(model: nn.Module, path: PathLike, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write ``model`` to ``path`` as a kancore model file (docs/model_format.md).

    The write is atomic: a temporary file in the same directory, renamed over ``path`` once
    complete.

    Parameters
    ----------
    model : KAN, KANLayer, KANLinear or nn.Sequential of them
        A single layer or a Sequential loads back as a ``KAN``.
    path : str or path
        The file to write.
    metadata : dict of str to str, optional
        Extra entries of the safetensors ``__metadata__`` (not the reserved ``format``,
        ``format_version`` and ``config``).
    """
    layers, norms = _layers_of(model)
    configs, tensors = [], {}
    for j, layer in enumerate(layers):
        cfg, t = _layer_entry(j, layer)
        if j and cfg["in_features"] != configs[-1]["out_features"]:
            raise ValueError(f"layer {j} takes {cfg['in_features']} features but layer {j - 1} gives "
                             f"{configs[-1]['out_features']}")
        configs.append(cfg)
        tensors.update(t)
    eps = 1e-5
    if norms is not None:
        for j, norm in enumerate(norms):
            if norm.weight is None or norm.bias is None:
                raise ValueError(f"norms.{j}: the model file needs LayerNorm with elementwise affine and bias")
            tensors[f"norms.{j}.weight"] = norm.weight
            tensors[f"norms.{j}.bias"] = norm.bias
        eps = float(norms[0].eps) if len(norms) else eps
        if any(float(n.eps) != eps for n in norms):
            raise ValueError("the model file holds one layernorm_eps; the norms' eps differ")
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        raise ValueError(f"every tensor must be float32, or every one float64; got {sorted(map(str, dtypes))}")
    dtype_name = "float32" if next(iter(dtypes)) == torch.float32 else "float64"
    config = {"dtype": dtype_name, "layernorm": norms is not None, "layernorm_eps": eps, "layers": configs}

    try:  # bare NaN/Infinity are not JSON: the C++ reader would refuse the file
        version = "2" if any("symbolic" in c for c in configs) else "1"  # older readers read version 1
        meta = {"format": FORMAT, "format_version": version, "config": json.dumps(config, allow_nan=False)}
    except ValueError:
        raise ValueError(f"cannot save: the layer settings hold a non-finite number ({configs})") from None
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key in _RESERVED_METADATA:
            raise ValueError(f"metadata key {key!r} is reserved")
        meta[key] = value
    arrays = {k: v.detach().cpu().numpy() for k, v in tensors.items()}
    try:  # never write (and replace a good file with) one the loaders reject
        validate(arrays, meta)
    except ValueError as exc:
        raise ValueError(f"cannot save {os.fspath(path)!r}: the model would not load back: {exc}") from None
    write_safetensors(path, arrays, meta)


def write_safetensors(path: PathLike, arrays: Dict[str, np.ndarray], metadata: Dict[str, str]) -> None:
    """Write float32/float64 arrays and string metadata as a safetensors file, atomically."""
    codes = {np.dtype("float32"): "F32", np.dtype("float64"): "F64"}
    header: dict = {"__metadata__": dict(metadata)}
    blobs, offset = [], 0
    for name, a in arrays.items():
        if a.dtype not in codes:
            raise ValueError(f"{name}: expected float32 or float64, got {a.dtype}")
        raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    for key, value in header["__metadata__"].items():
        try:  # an unpaired surrogate would be written as "\ud800", which readers reject
            key.encode("utf-8")
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"metadata {key!r}: not valid Unicode text ({exc.reason})") from None
    _check_json(header, "the header to write")  # refuse what the C++ loader would refuse
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the spec pads the header to a multiple of 8 bytes
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"the header would take {len(text)} bytes, more than the {MAX_HEADER_BYTES} "
                         "a loader accepts (metadata too large)")
    path = os.fspath(path)
    if "\0" in path:
        raise ValueError(f"the path contains a NUL character: {path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    try:  # a file being replaced keeps its permissions (a 0600 checkpoint stays 0600)
        st = os.stat(path)
        keep_mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
    except FileNotFoundError:
        keep_mode = None
    # A fresh name in the same directory, created with the mode open() would give (0666 & ~umask).
    while True:
        tmp = os.path.join(directory, f".kancore-{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            if keep_mode is not None:
                os.fchmod(f.fileno(), keep_mode)
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for raw in blobs:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the file itself is complete


# -- reading -------------------------------------------------------------------------------------

# The C++ reader's JSON limits (header and config alike): both loaders accept the same files.
MAX_JSON_DEPTH = 8          # nesting below the top-level value
MAX_JSON_VALUES = 1 << 18   # values in one document, containers and strings included


def _check_json(value, what: str) -> None:
    """Depth, value count and well-formed strings (no lone surrogates, which Python's json reads
    from "\\ud800" escapes and the C++ reader refuses), as the C++ reader checks them."""
    count = 0
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        count += 1
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH}")
        if count > MAX_JSON_VALUES:
            raise ValueError(f"{what}: more than {MAX_JSON_VALUES} JSON values")
        if isinstance(v, dict):
            for k, item in v.items():
                _check_text(k, what)
                stack.append((item, depth + 1))
        elif isinstance(v, list):
            stack.extend((item, depth + 1) for item in v)
        elif isinstance(v, str):
            _check_text(v, what)


def _check_text(s: str, what: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what}: a JSON string is not valid Unicode ({exc.reason})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def read_safetensors(path: PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Parse a safetensors file of F32/F64 tensors with every offset bounds-checked. Returns
    (arrays, metadata). A missing file raises FileNotFoundError; anything that is not a regular
    file, or is malformed, ValueError (a file that is not safetensors at all says "not a kancore
    model file"). Reads at most the file's size, whatever its header claims."""
    size = _regular_file_size(path)
    with open(path, "rb") as f:
        data = f.read(size)
    if len(data) < 8:
        raise ValueError(f"{path}: not a kancore model file (only {len(data)} bytes; a safetensors "
                         "file starts with an 8-byte header length)")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > len(data) or data[8:9] != b"{":
        # A foreign file (a pickle, an image, text...) rarely has a plausible header; a kancore
        # file cut short is reported as truncated below only when its header still fits.
        reason = (f"its first 8 bytes give a header length of {n}, beyond the file's {len(data)} bytes"
                  if 8 + n > len(data) or n > MAX_HEADER_BYTES else "the header is not a JSON object")
        raise ValueError(f"{path}: not a kancore model file ({reason})")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a kancore model file (the header is not valid UTF-8 JSON: {exc})") from exc
    _check_json(header, f"{path}: header")
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings")
    body = memoryview(data)[8 + n:]
    codes = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
    spans, arrays = [], {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: tensor {name!r}: expected keys dtype, shape, data_offsets, got {entry!r}")
        dt = entry["dtype"]
        if not isinstance(dt, str) or dt not in codes:
            raise ValueError(f"{path}: tensor {name!r}: dtype must be F32 or F64, got {dt!r}")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise ValueError(f"{path}: tensor {name!r}: shape must be a list of ints >= 0, got {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= len(body)):
            raise ValueError(f"{path}: tensor {name!r}: data_offsets {offsets!r} outside the data section "
                             f"of {len(body)} bytes")
        nbytes = math.prod(shape) * codes[dt].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise ValueError(f"{path}: tensor {name!r}: shape {shape} {dt} needs {nbytes} bytes, "
                             f"data_offsets give {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name, codes[dt], shape))
    # Layout first, copies after: overlapping entries must not make us allocate more than the file.
    end = 0
    for begin, stop, name, _, _ in sorted(spans, key=lambda sp: (sp[0], sp[1])):
        if begin != end:
            raise ValueError(f"{path}: tensor {name!r} starts at byte {begin}, expected {end} "
                             "(tensors must be back to back without overlap)")
        end = stop
    if end != len(body):
        raise ValueError(f"{path}: the tensors cover {end} bytes of a {len(body)}-byte data section")
    for begin, stop, name, dt, shape in spans:
        arrays[name] = np.frombuffer(body[begin:stop], dtype=dt).reshape(shape).copy()
    return arrays, metadata


def _regular_file_size(path) -> int:
    """The size of the regular file at ``path``; FileNotFoundError when there is none, ValueError
    for a directory, FIFO, device or socket (reading those could block or never end)."""
    st = os.stat(path)  # FileNotFoundError / PermissionError with the path, from the OS
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file (a kancore model file is a regular file)")
    return st.st_size


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _int_field(where: str, cfg: dict, key: str, low: int, high: Optional[int] = None) -> int:
    v = cfg.get(key)
    _need(_is_int(v) and v >= low and (high is None or v <= high),
          f"{where}: {key!r} must be an int in [{low}, {high if high is not None else 'inf'}], got {v!r}")
    return v


def _real_field(where: str, cfg: dict, key: str) -> float:
    v = cfg.get(key)
    _need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
          f"{where}: {key!r} must be a finite number > 0, got {v!r}")
    return float(v)


def parse_config(metadata: Dict[str, str]) -> dict:
    """Check __metadata__'s format fields and return the validated network config."""
    _need(metadata.get("format") == FORMAT,
          f"not a kancore model file (a safetensors file whose __metadata__ 'format' is "
          f"{metadata.get('format')!r}, expected {FORMAT!r})")
    version = metadata.get("format_version")
    _need(version in _VERSIONS, f"unsupported format_version {version!r} (this reader knows {list(_VERSIONS)})")
    try:
        cfg = json.loads(metadata.get("config", ""), object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the 'config' metadata is not valid JSON: {type(exc).__name__}: {exc}") from None
    _need(isinstance(cfg, dict), "the config must be a JSON object")
    _check_json(cfg, "config")
    _need(isinstance(cfg.get("dtype"), str) and cfg.get("dtype") in _DTYPES, f"config dtype must be 'float32' or 'float64', got {cfg.get('dtype')!r}")
    _need(isinstance(cfg.get("layernorm"), bool), f"config 'layernorm' must be true or false, got {cfg.get('layernorm')!r}")
    _real_field("config", cfg, "layernorm_eps")  # always written, required by both loaders
    layers = cfg.get("layers")
    _need(isinstance(layers, list) and len(layers) >= 1, "config 'layers' must be a non-empty list")
    for j, L in enumerate(layers):
        where = f"config layer {j}"
        _need(isinstance(L, dict), f"{where} must be a JSON object")
        _need(L.get("kind") in ("c0", "bspline"), f"{where}: unknown kind {L.get('kind')!r} (expected 'c0' or 'bspline')")
        _int_field(where, L, "in_features", 1)
        _int_field(where, L, "out_features", 1)
        if L["kind"] == "c0":
            _int_field(where, L, "num_control_points", 2)
            _real_field(where, L, "spline_width")
            _need(isinstance(L.get("fitted_domain"), bool), f"{where}: 'fitted_domain' must be true or false")
        else:
            _int_field(where, L, "grid_size", 1)
            _int_field(where, L, "spline_order", 1, 64)
        if "symbolic" in L:
            _symbolic_field(where, L, version)
        if j:
            _need(L["in_features"] == layers[j - 1]["out_features"],
                  f"{where}: in_features {L['in_features']} does not match layer {j - 1}'s out_features "
                  f"{layers[j - 1]['out_features']}")
    return cfg


def _symbolic_field(where: str, L: dict, version: str) -> None:
    _need(version != "1", f"{where}: symbolic edges need format_version '2', the file says '1'")
    edges = L["symbolic"]
    _need(isinstance(edges, list), f"{where}: 'symbolic' must be a list")
    seen = set()
    for e in edges:
        _need(isinstance(e, dict), f"{where}: each symbolic edge must be a JSON object")
        i = _int_field(where + " symbolic edge", e, "in", 0, L["in_features"] - 1)
        o = _int_field(where + " symbolic edge", e, "out", 0, L["out_features"] - 1)
        _need(e.get("function") in FUNCTIONS,
              f"{where}: unknown symbolic function {e.get('function')!r} (known: {list(FUNCTIONS)})")
        _need((i, o) not in seen, f"{where}: symbolic edge ({i}, {o}) is fixed twice")
        seen.add((i, o))


def expected_tensors(cfg: dict) -> Dict[str, Tuple[int, ...]]:
    """Every tensor name the config implies, with its shape."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    for j, L in enumerate(cfg["layers"]):
        p, I, O = f"layers.{j}.", L["in_features"], L["out_features"]
        if L["kind"] == "c0":
            shapes[p + "kan_weight"] = (I, L["num_control_points"], O)
            if L["fitted_domain"]:
                shapes[p + "input_scale"] = (I,)
                shapes[p + "input_offset"] = (I,)
        else:
            G, k = L["grid_size"], L["spline_order"]
            shapes.update({p + "grid": (I, G + 2 * k + 1), p + "base_weight": (O, I),
                           p + "spline_weight": (O, I, G + k), p + "spline_scaler": (O, I)})
        if L.get("symbolic"):
            shapes[p + "symbolic_affine"] = (len(L["symbolic"]), 4)
        if cfg["layernorm"] and j < len(cfg["layers"]) - 1:
            shapes[f"norms.{j}.weight"] = (O,)
            shapes[f"norms.{j}.bias"] = (O,)
    return shapes


def _grid_range(L: dict):
    gr = L.get("grid_range")  # an extra key: informative, used only by later grid updates
    ok = (isinstance(gr, list) and len(gr) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                         and math.isfinite(v) for v in gr) and gr[0] < gr[1])
    return tuple(gr) if ok else (-1.0, 1.0)


def validate(arrays: Dict[str, np.ndarray], metadata: Dict[str, str]) -> dict:
    """Check a model file's content (the loader's rules, docs/model_format.md) and return its
    config; ValueError on the first problem. ``save`` runs it before writing, so a file it writes
    is one the loaders read."""
    cfg = parse_config(metadata)
    shapes = expected_tensors(cfg)
    missing = sorted(set(shapes) - set(arrays))
    extra = sorted(set(arrays) - set(shapes))
    _need(not missing and not extra, f"tensor names do not match the config: missing {missing}, unexpected {extra}")
    for name, shape in shapes.items():
        a = arrays[name]
        _need(a.dtype == _DTYPES[cfg["dtype"]][1], f"tensor {name!r} is {a.dtype}, the config says {cfg['dtype']}")
        _need(a.shape == shape, f"tensor {name!r} has shape {list(a.shape)}, the config implies {list(shape)}")
        if name.endswith((".grid", ".input_scale", ".input_offset")):
            _need(bool(np.isfinite(a).all()), f"tensor {name!r} must be finite")
        if name.endswith(".grid"):
            _need(bool((np.diff(a, axis=1) >= 0).all()), f"tensor {name!r}: knots must be non-decreasing")
    return cfg


def load(path: PathLike, device: Optional[Union[str, torch.device]] = None) -> KAN:
    """Read a kancore model file and return the ``KAN`` it describes.

    Parameters
    ----------
    path : str or path
        A file written by ``kancore.save``, ``NumpyKAN.save`` or C++ ``kancore::save``.
    device : torch.device or str, optional
        Move the model there.

    Returns
    -------
    KAN
        C0 layers come back with ``variant="B-spline"`` (the same function).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not a regular file, not a kancore model file, or a malformed, truncated or inconsistent
        one (checked before anything is built).
    """
    arrays, metadata = read_safetensors(path)
    try:
        cfg = validate(arrays, metadata)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    tdtype = _DTYPES[cfg["dtype"]][2]

    layers = cfg["layers"]
    first = layers[0]
    widths = [first["in_features"]] + [L["out_features"] for L in layers]
    eps = float(cfg.get("layernorm_eps", 1e-5))
    kinds = {L["kind"] for L in layers}
    # Every parameter comes from the file: build without the (costly, random) initialisation.
    with skip_initialisation():
        if first["kind"] == "c0":
            model = KAN(widths, kind="c0", layernorm=cfg["layernorm"], layernorm_eps=eps,
                        num_control_points=first["num_control_points"], spline_width=first["spline_width"],
                        init="zero", dtype=tdtype)
        else:
            model = KAN(widths, grid_size=first["grid_size"], spline_order=first["spline_order"],
                        grid_range=_grid_range(first), layernorm=cfg["layernorm"], layernorm_eps=eps,
                        dtype=tdtype)
        if len(kinds) > 1 or any(not _same_shape(L, first) for L in layers):
            # Mixed kinds or per-layer sizes: build each layer as the file says.
            model.layers = nn.ModuleList(_make_layer(L, tdtype) for L in layers)
            model.kind = first["kind"] if len(kinds) == 1 else "mixed"
    for j, L in enumerate(layers):
        if L["kind"] == "bspline" and "grid_eps" in L:
            ge = L["grid_eps"]
            if isinstance(ge, (int, float)) and not isinstance(ge, bool) and 0 <= ge <= 1:
                model.layers[j].grid_eps = float(ge)
    state = model.state_dict()  # keeps the C0 layers' index buffers, which the file does not hold
    state.update((name, torch.from_numpy(a)) for name, a in arrays.items() if not name.endswith(".symbolic_affine"))
    model.load_state_dict(state, strict=True)
    for j, L in enumerate(layers):  # symbolic edges, with their constants as stored (NaN included)
        layer = model.layers[j]
        for e in L.get("symbolic", []):
            layer.fix_symbolic(e["in"], e["out"], e["function"])
        if L.get("symbolic"):
            rows = [layer.symbolic.find(e["in"], e["out"]) for e in L["symbolic"]]
            with torch.no_grad():
                layer.symbolic.affine[rows] = torch.from_numpy(arrays[f"layers.{j}.symbolic_affine"]).to(
                    layer.symbolic.affine.dtype)
    if device is not None:
        model = model.to(device)
    return model


def _same_shape(L: dict, first: dict) -> bool:
    keys = ("kind", "num_control_points", "spline_width", "grid_size", "spline_order", "grid_range")
    return all(L.get(k) == first.get(k) for k in keys)


def _make_layer(L: dict, dtype):
    if L["kind"] == "c0":
        return KANLayer(L["in_features"], L["out_features"], "zero", num_control_points=L["num_control_points"],
                        spline_width=L["spline_width"], dtype=dtype)
    return KANLinear(L["in_features"], L["out_features"], grid_size=L["grid_size"],
                     spline_order=L["spline_order"], grid_range=_grid_range(L), dtype=dtype)
