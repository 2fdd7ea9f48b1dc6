#!/usr/bin/python3
"""PyTorch reference implementation of the HeptaPod grid transformer.

This module is the reference for MODEL.md ("The Heptapod grid transformer: model and
checkpoint contract"). It is written from that page alone and favours clarity over
speed; the C engine and the trainer are checked against it.

    parse_hparams(metadata) -> hp           section 2 (strings -> typed values)
    hparams_metadata(hp) -> {str: str}      the inverse, for writing a checkpoint
    HeptapodModel(hp)                        section 3; forward(tokens[B,H,W]) -> [B,H,W,V]
    init_random(model, seed, std=0.02)       random weights for tests and fixtures
    save_checkpoint / load_checkpoint        section 4 (safetensors, F32/F16/BF16)
    generate(model, given, iterations, ...)  section 5 (iterative refinement)
    quantize_int8(model)                     section 6.1 (int8 Linear layers, in place)
    set_precision_bf16(model)                section 6.2 (bf16 Linear layers, in place)

Run with /usr/bin/python3 (Debian's python3-torch).
"""

import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "heptapod"
ARCH = "heptapod-v1"
POS_EMB = "pos_emb.weight"  # the optional absolute position table (section 4)
GLOBAL = -1  # window entry meaning "every cell of the grid"

_REQUIRED = ("format", "arch", "vocab_size", "dim", "depth", "heads", "window",
             "mask_token", "tokenizer", "max_height", "max_width")


# --- hyper-parameters (section 2) ------------------------------------------------

def _int(key, value):
    if isinstance(value, bool):
        raise ValueError(f"{key}: not an integer: {value!r}")
    if isinstance(value, int):
        return value
    s = str(value).strip()
    if not s or not (s.isdigit() or (s[0] in "+-" and s[1:].isdigit())):
        raise ValueError(f"{key}: not an integer: {value!r}")
    return int(s)


def _float(key, value):
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: not a number: {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{key}: not finite: {value!r}")
    return f


def _per_layer(key, value, depth, allow_global):
    """One integer for all blocks or a comma list of `depth` entries."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [s.strip() for s in str(value).split(",")]
    if len(items) == 1:
        items = items * depth
    if len(items) != depth:
        raise ValueError(f"{key}: {len(items)} entries for depth {depth}")
    out = []
    for it in items:
        # "global" in metadata; GLOBAL (-1) only as an int from typed hyper-parameters.
        if allow_global and (it == "global" or (type(it) is int and it == GLOBAL)):
            out.append(GLOBAL)
            continue
        v = _int(key, it)
        if v < 0:
            raise ValueError(f"{key}: negative entry {it!r}")
        out.append(v)
    return out


def parse_hparams(metadata):
    """Typed hyper-parameters from a `__metadata__` map; raises ValueError on a fault.

    Returns a dict with the keys of section 2: ints, `window` and `dilation` as lists
    of `depth` ints (window -1 means global), floats for rope_base and norm_eps, and
    the defaults of section 2 filled in. Informational keys are ignored.
    """
    md = dict(metadata)
    for key in _REQUIRED:
        if key not in md:
            raise ValueError(f"metadata: missing key '{key}'")
    if md["format"] != FORMAT:
        raise ValueError(f"format: expected '{FORMAT}', got {md['format']!r}")
    if md["arch"] != ARCH:
        raise ValueError(f"arch: expected '{ARCH}', got {md['arch']!r}")
    hp = {"format": FORMAT, "arch": ARCH}
    for key in ("vocab_size", "dim", "depth", "heads", "mask_token", "max_height",
                "max_width"):
        hp[key] = _int(key, md[key])
    V, D, L, nh = hp["vocab_size"], hp["dim"], hp["depth"], hp["heads"]
    if V < 2:
        raise ValueError(f"vocab_size: must be >= 2, got {V}")
    if L < 1:
        raise ValueError(f"depth: must be >= 1, got {L}")
    if nh < 1 or D < 1 or D % nh:
        raise ValueError(f"dim {D} not divisible by heads {nh}")
    if (D // nh) % 4:
        raise ValueError(f"head dim {D // nh} not divisible by 4")
    hp["window"] = _per_layer("window", md["window"], L, True)
    hp["dilation"] = _per_layer("dilation", md.get("dilation", "1"), L, False)
    if any(d < 1 for d in hp["dilation"]):
        raise ValueError(f"dilation: must be >= 1, got {md.get('dilation')!r}")
    hp["mlp_hidden"] = _int("mlp_hidden", md.get("mlp_hidden", 4 * D))
    if hp["mlp_hidden"] < 1:
        raise ValueError(f"mlp_hidden: must be >= 1, got {hp['mlp_hidden']}")
    hp["rope_base"] = _float("rope_base", md.get("rope_base", "10000"))
    if not hp["rope_base"] > 1:
        raise ValueError(f"rope_base: must be > 1, got {hp['rope_base']}")
    hp["norm_eps"] = _float("norm_eps", md.get("norm_eps", "1e-5"))
    if not hp["norm_eps"] > 0:
        raise ValueError(f"norm_eps: must be > 0, got {hp['norm_eps']}")
    if not 0 <= hp["mask_token"] < V:
        raise ValueError(f"mask_token: {hp['mask_token']} not in [0, {V})")
    hp["tokenizer"] = str(md["tokenizer"])
    if hp["tokenizer"] not in ("byte", "none"):
        raise ValueError(f"tokenizer: expected 'byte' or 'none', got {md['tokenizer']!r}")
    if hp["tokenizer"] == "byte" and V < 256:
        raise ValueError(f"tokenizer byte needs vocab_size >= 256, got {V}")
    if hp["max_height"] < 1 or hp["max_width"] < 1:
        raise ValueError("max_height and max_width must be >= 1")
    return hp


def _fmt_float(f):
    return str(int(f)) if float(f).is_integer() and abs(f) < 1e15 else repr(float(f))


def _fmt_list(items, is_window):
    strs = ["global" if (is_window and r == GLOBAL) else str(int(r)) for r in items]
    return strs[0] if len(set(strs)) == 1 else ",".join(strs)


def hparams_metadata(hp):
    """The section 2 keys of `hp` (typed or strings) as a string-to-string map."""
    hp = parse_hparams({k: (v if isinstance(v, (list, tuple)) else str(v))
                        for k, v in hp.items()}) if not _is_typed(hp) else hp
    md = {"format": FORMAT, "arch": ARCH}
    for key in ("vocab_size", "dim", "depth", "heads"):
        md[key] = str(hp[key])
    md["window"] = _fmt_list(hp["window"], True)
    md["dilation"] = _fmt_list(hp["dilation"], False)
    md["mlp_hidden"] = str(hp["mlp_hidden"])
    md["rope_base"] = _fmt_float(hp["rope_base"])
    md["norm_eps"] = repr(float(hp["norm_eps"]))
    for key in ("mask_token", "tokenizer", "max_height", "max_width"):
        md[key] = str(hp[key])
    return md


def _is_typed(hp):
    return isinstance(hp.get("window"), list) and isinstance(hp.get("dim"), int) \
        and isinstance(hp.get("dilation"), list) and "mlp_hidden" in hp \
        and "rope_base" in hp and "norm_eps" in hp


# --- forward pass (section 3) ----------------------------------------------------

def rope_tables(H, W, dh, base, device=None):
    """cos, sin of shape [H, W, dh], laid out like the head vector (section 3.1).

    Entries j and j + m/2 of the row half hold angle y * w_j; the same entries of the
    column half hold x * w_j, with w_j = base ** (-2j/m), m = dh/2. Angles are formed
    in double precision and rounded to float32 once.
    """
    m = dh // 2
    j = torch.arange(m // 2, dtype=torch.float64)
    w = torch.tensor(float(base), dtype=torch.float64) ** (-2.0 * j / m)
    ay = torch.arange(H, dtype=torch.float64)[:, None] * w  # [H, m/2]
    ax = torch.arange(W, dtype=torch.float64)[:, None] * w  # [W, m/2]
    ay = torch.cat([ay, ay], 1)[:, None, :].expand(H, W, m)
    ax = torch.cat([ax, ax], 1)[None, :, :].expand(H, W, m)
    ang = torch.cat([ay, ax], 2)
    return ang.cos().float().to(device), ang.sin().float().to(device)


def rope2d(t, cos, sin):
    """Rotate t [..., H, W, dh]: rotate-half inside the row half and the column half."""
    dh = t.shape[-1]
    m2 = dh // 4
    a = t.reshape(*t.shape[:-1], 2, 2, m2)  # [..., half, first/second quarter, m/2]
    rot = torch.stack([-a[..., 1, :], a[..., 0, :]], -2).reshape(t.shape)
    return t * cos + rot * sin


def global_attention(q, k, v):
    """Full attention inside each grid; q, k, v [B, nh, H, W, dh]."""
    B, nh, H, W, dh = q.shape
    qf, kf, vf = (t.reshape(B, nh, H * W, dh) for t in (q, k, v))
    s = torch.matmul(qf, kf.transpose(-1, -2)) / math.sqrt(dh)
    return torch.matmul(torch.softmax(s, -1), vf).reshape(B, nh, H, W, dh)


def local_attention(q, k, v, r, d):
    """Section 3.2 on q, k, v [B, nh, H, W, dh]: radius r (or GLOBAL), dilation d.

    One pass per window offset (i, j): K and V are zero-padded and shifted so that
    cell (y, x) lines up with (y + d*i, x + d*j); a mask drops the neighbours that fall
    outside the grid. Offsets that miss the grid for every cell are skipped, so a
    radius larger than the grid costs nothing extra. Scores of all offsets are
    stacked and normalised by one softmax over the offset axis.
    """
    if r == GLOBAL:
        return global_attention(q, k, v)
    B, nh, H, W, dh = q.shape
    ry, rx = min(r, (H - 1) // d), min(r, (W - 1) // d)
    py, px = d * ry, d * rx
    kp = F.pad(k, (0, 0, px, px, py, py))
    vp = F.pad(v, (0, 0, px, px, py, py))
    scale = 1.0 / math.sqrt(dh)
    ys = torch.arange(H, device=q.device)
    xs = torch.arange(W, device=q.device)
    offsets = [(i, j) for i in range(-ry, ry + 1) for j in range(-rx, rx + 1)]
    scores = []
    for i, j in offsets:
        ks = kp[:, :, py + d * i: py + d * i + H, px + d * j: px + d * j + W]
        s = (q * ks).sum(-1) * scale  # [B, nh, H, W]
        vy = (ys + d * i >= 0) & (ys + d * i < H)
        vx = (xs + d * j >= 0) & (xs + d * j < W)
        valid = vy[:, None] & vx[None, :]
        if not bool(valid.all()):
            s = s.masked_fill(~valid, float("-inf"))
        scores.append(s)
    p = torch.softmax(torch.stack(scores, 0), 0)  # the offset (0, 0) is always valid
    out = None
    for n, (i, j) in enumerate(offsets):
        vs = vp[:, :, py + d * i: py + d * i + H, px + d * j: px + d * j + W]
        term = p[n].unsqueeze(-1) * vs
        out = term if out is None else out + term
    return out


class Attention(nn.Module):
    def __init__(self, dim, heads, window, dilation):
        super().__init__()
        self.heads, self.window, self.dilation = heads, window, dilation
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, u, cos, sin):
        B, H, W, D = u.shape
        nh, dh = self.heads, D // self.heads
        # q first, then k, then v; head j owns [j*dh, (j+1)*dh) of each.
        qkv = self.qkv(u).reshape(B, H, W, 3, nh, dh).permute(3, 0, 4, 1, 2, 5)
        q, k, v = rope2d(qkv[0], cos, sin), rope2d(qkv[1], cos, sin), qkv[2]
        a = local_attention(q, k, v, self.window, self.dilation)  # [B, nh, H, W, dh]
        return self.proj(a.permute(0, 2, 3, 1, 4).reshape(B, H, W, D))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, u):
        return self.fc2(F.gelu(self.fc1(u)))  # exact erf GELU


class Block(nn.Module):
    # attention_cls: a drop-in for Attention (same parameters, same call), e.g. the
    # trainer's tiled one.
    def __init__(self, dim, heads, hidden, window, dilation, eps, attention_cls=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = (attention_cls or Attention)(dim, heads, window, dilation)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, h, cos, sin):
        h = h + self.attn(self.norm1(h), cos, sin)
        return h + self.mlp(self.norm2(h))


class HeptapodModel(nn.Module):
    """MODEL.md section 3. Parameter names are the tensor names of section 4."""

    def __init__(self, hp):
        super().__init__()
        if not _is_typed(hp):
            hp = parse_hparams(hp)
        self.hp = dict(hp)
        D, L, eps = hp["dim"], hp["depth"], hp["norm_eps"]
        self.tok_emb = nn.Embedding(hp["vocab_size"], D)
        if hp.get("pos_emb"):
            self.pos_emb = PositionTable(hp["max_height"], hp["max_width"], D)
        self.blocks = nn.ModuleList(
            Block(D, hp["heads"], hp["mlp_hidden"], hp["window"][i], hp["dilation"][i], eps)
            for i in range(L))
        self.norm = nn.LayerNorm(D, eps=eps)
        self.head = nn.Linear(D, hp["vocab_size"])

    def forward(self, tokens):
        """tokens LongTensor [B, H, W] (grids of one size) -> logits [B, H, W, V]."""
        if tokens.dim() != 3:
            raise ValueError(f"tokens must be [B, H, W], got shape {tuple(tokens.shape)}")
        B, H, W = tokens.shape
        dh = self.hp["dim"] // self.hp["heads"]
        cos, sin = rope_tables(H, W, dh, self.hp["rope_base"], tokens.device)
        h = self.tok_emb(tokens)
        if self.hp.get("pos_emb"):
            if H > self.hp["max_height"] or W > self.hp["max_width"]:
                raise ValueError(f"grid {H}x{W} exceeds the position table "
                                 f"{self.hp['max_height']}x{self.hp['max_width']}")
            h = h + position_rows(self.pos_emb.weight, H, W)
        for blk in self.blocks:
            h = blk(h, cos, sin)
        return self.head(self.norm(h))


# --- bf16 precision (section 6.2) --------------------------------------------------

def bf16_round(t):
    """t rounded to bfloat16 (nearest even; NaN stays NaN) and back, as float32."""
    return t.float().to(torch.bfloat16).float()


class Bf16Linear(nn.Linear):
    """A Linear layer at precision bf16: weight and input rounded to bfloat16, the
    products summed in float64 (each is exact), the sum rounded to float32 and
    added to the float32 bias, as the engine adds its float32 sums to the bias."""

    def forward(self, x):
        xb = bf16_round(x).double()
        wb = bf16_round(self.weight).double()
        return F.linear(xb, wb).float() + self.bias


def set_precision_bf16(model):
    """Turns every Linear layer of `model` (qkv, proj, fc1, fc2, head) into a
    Bf16Linear in place, sharing its parameters; embedding, attention, norms,
    GELU and rope stay float32. Returns the model."""
    for mod in model.modules():
        if type(mod) is nn.Linear:
            mod.__class__ = Bf16Linear
    return model


def position_rows(table, H, W):
    """The vectors an H x W grid adds: the top-left corner of the table [maxH, maxW, D]."""
    return table[:H, :W]


class PositionTable(nn.Module):
    """The optional absolute position table of section 4: `pos_emb.weight`
    [max_height, max_width, D], row (y, x) added to the embedding of cell (y, x)."""

    def __init__(self, max_height, max_width, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_height, max_width, dim))


def expected_shapes(hp):
    """Ordered {name: shape} of section 4 for typed hyper-parameters `hp`."""
    V, D, F_ = hp["vocab_size"], hp["dim"], hp["mlp_hidden"]
    shapes = {"tok_emb.weight": [V, D]}
    if hp.get("pos_emb"):
        shapes["pos_emb.weight"] = [hp["max_height"], hp["max_width"], D]
    for l in range(hp["depth"]):
        p = f"blocks.{l}."
        shapes.update({
            p + "norm1.weight": [D], p + "norm1.bias": [D],
            p + "attn.qkv.weight": [3 * D, D], p + "attn.qkv.bias": [3 * D],
            p + "attn.proj.weight": [D, D], p + "attn.proj.bias": [D],
            p + "norm2.weight": [D], p + "norm2.bias": [D],
            p + "mlp.fc1.weight": [F_, D], p + "mlp.fc1.bias": [F_],
            p + "mlp.fc2.weight": [D, F_], p + "mlp.fc2.bias": [D],
        })
    shapes.update({"norm.weight": [D], "norm.bias": [D],
                   "head.weight": [V, D], "head.bias": [V]})
    return shapes


def init_random(model, seed, std=0.02, overrides=None):
    """Deterministic random weights: weights N(0, std), LayerNorm weights 1 + N(0, std),
    biases N(0, std). `overrides` maps a parameter-name suffix (e.g. "tok_emb.weight")
    to another std for that tensor (the added noise for LayerNorm weights)."""
    g = torch.Generator().manual_seed(int(seed))
    overrides = overrides or {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            s = std
            for suffix, val in overrides.items():
                if name.endswith(suffix):
                    s = val
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * s
            if ".norm" in "." + name and name.endswith(".weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)
    return model


# --- checkpoint file (section 4) --------------------------------------------------

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_NP_LE = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}
_SIZES = {"F32": 4, "F16": 2, "BF16": 2}


def _dtype_name(dtype):
    if isinstance(dtype, torch.dtype):
        for name, dt in _DTYPES.items():
            if dt == dtype:
                return name
    else:
        s = str(dtype).upper().replace("FLOAT", "F").replace("FP", "F")
        s = {"F": "F32", "HALF": "F16", "BFLOAT16": "BF16", "BF": "BF16"}.get(s, s)
        if s in _DTYPES:
            return s
    raise ValueError(f"unsupported checkpoint dtype {dtype!r} (F32, F16 or BF16)")


def tensor_bytes(t, dname):
    t = t.detach().to("cpu").contiguous()
    if dname == "BF16":
        # torch rounds to nearest even; numpy has no bfloat16, so write the raw bits.
        arr = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2")
    else:
        arr = t.to(_DTYPES[dname]).numpy().astype(_NP_LE[dname])
    return arr.tobytes()


def save_checkpoint(path, model_or_state_dict, metadata, dtype=torch.float32):
    """Write a section 4 safetensors file.

    `metadata` is merged over the section 2 keys derived from it (format and arch are
    filled in); tensors are written in section 4 order, packed without gaps. The
    header is padded with spaces to a multiple of 8 bytes so the data is aligned.
    """
    dname = _dtype_name(dtype)
    sd = (model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module)
          else dict(model_or_state_dict))
    md = {str(k): (",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
          for k, v in dict(metadata).items()}
    md.setdefault("format", FORMAT)
    md.setdefault("arch", ARCH)
    hp = parse_hparams(md)
    hp["pos_emb"] = POS_EMB in sd
    shapes = expected_shapes(hp)
    extra = sorted(set(sd) - set(shapes))
    if extra:
        raise ValueError(f"{path}: unexpected tensors {extra}")
    entries = []
    for name, shape in shapes.items():
        if name not in sd:
            raise ValueError(f"{path}: missing tensor {name}")
        t = sd[name]
        if list(t.shape) != shape:
            raise ValueError(f"{path}: {name} has shape {list(t.shape)}, expected {shape}")
        entries.append((name, dname, shape, tensor_bytes(t, dname)))
    write_safetensors(path, entries, md)


def write_safetensors(path, entries, metadata):
    """Writes (name, dtype, shape, raw bytes) entries in order, packed, with the
    header padded to 8 bytes (section 4), through a temporary file renamed into place."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, dname, shape, b in entries:
        header[name] = {"dtype": dname, "shape": list(shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-(8 + len(hb))) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """(tensors {name: float32 Tensor}, metadata, dtypes {name: str}) with the checks
    of section 4 on the file layout; raises ValueError naming the file and the fault."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, no header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: truncated: header length {n} past end of file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    md = header.pop("__metadata__", None)
    if not isinstance(md, dict) or not all(isinstance(v, str) for v in md.values()):
        raise ValueError(f"{path}: __metadata__ missing or not a string map")
    body = len(data) - 8 - n
    spans = []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: malformed entry for tensor {name}")
        dt, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dt not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt!r}")
        if (not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape)
                or not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) for o in offs)):
            raise ValueError(f"{path}: tensor {name}: malformed shape or data_offsets")
        b, en = offs
        if not 0 <= b <= en:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {offs}")
        if en > body:
            raise ValueError(f"{path}: tensor {name}: data_offsets {offs} past end of file")
        if en - b != _SIZES[dt] * math.prod(shape):
            raise ValueError(f"{path}: tensor {name}: {en - b} bytes for shape {shape} {dt}")
        spans.append((b, en, name))
    spans.sort()
    pos = 0
    for b, en, name in spans:
        if b < pos:
            raise ValueError(f"{path}: tensor {name} overlaps the previous tensor")
        if b > pos:
            raise ValueError(f"{path}: gap of {b - pos} bytes before tensor {name}")
        pos = en
    if pos != body:
        raise ValueError(f"{path}: {body - pos} unused bytes after the last tensor")
    tensors, dtypes = {}, {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        raw = data[8 + n + b: 8 + n + en]
        dt = e["dtype"]
        if dt == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_NP_LE[dt]).astype(np.float32)
        tensors[name] = torch.from_numpy(arr.copy()).reshape(e["shape"])
        dtypes[name] = dt
    return tensors, md, dtypes


def load_checkpoint(path):
    """(HeptapodModel in eval mode with float32 weights, metadata dict)."""
    tensors, md, _ = read_safetensors(path)
    try:
        hp = parse_hparams(md)
    except ValueError as e:
        raise ValueError(f"{path}: metadata: {e}") from None
    hp["pos_emb"] = POS_EMB in tensors  # optional: its presence turns it on
    shapes = expected_shapes(hp)
    for name, shape in shapes.items():
        if name not in tensors:
            raise ValueError(f"{path}: missing tensor {name}")
        if list(tensors[name].shape) != shape:
            raise ValueError(f"{path}: tensor {name} has shape {list(tensors[name].shape)}, "
                             f"expected {shape}")
    extra = sorted(set(tensors) - set(shapes))
    if extra:
        raise ValueError(f"{path}: unexpected tensors {extra}")
    model = HeptapodModel(hp)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, md


# --- int8 precision (section 6.1) --------------------------------------------------

INT8_TINY = 2.0 ** -100  # max |x| below this: the row quantizes to zeros


def quantize_weight_int8(w):
    """Per output channel (row of w [out, k]): (q int64 [out, k] in [-127, 127],
    scale float32 [out]) with scale = max|w_row| / 127 (1 for a row below INT8_TINY,
    whose q are 0) and q = round-half-even(w / scale)."""
    w = w.detach().to(torch.float32)
    if not torch.isfinite(w).all():
        raise ValueError("int8: a weight holds inf or NaN")
    amax = w.abs().amax(dim=1)
    tiny = amax < INT8_TINY
    scale = torch.where(tiny, torch.ones_like(amax), amax / torch.tensor(127.0))
    q = torch.round((w / scale[:, None]).clamp(-127.0, 127.0))
    q[tiny] = 0.0
    return q.to(torch.int64), scale


def quantize_rows_int8(a):
    """Per row (last dim) of float32 activations: (q int64, scale float32 [...]).
    inv = 127 / max|a| (float32), q = round-half-even(a * inv) clamped to [-127, 127],
    scale = max|a| / 127; a row below INT8_TINY gives q 0 and scale 0, a row holding
    inf or NaN q 0 and scale NaN."""
    amax = a.abs().amax(dim=-1)
    bad = ~torch.isfinite(amax)
    zero = bad | (amax < INT8_TINY)
    safe = torch.where(zero, torch.ones_like(amax), amax)
    inv = torch.where(zero, torch.zeros_like(amax), torch.tensor(127.0) / safe)
    scale = torch.where(zero, torch.zeros_like(amax), safe / torch.tensor(127.0))
    scale = torch.where(bad, torch.full_like(amax, float("nan")), scale)
    q = torch.round((a * inv[..., None]).clamp(-127.0, 127.0))
    q = torch.where(zero[..., None], torch.zeros_like(q), q)
    return q.to(torch.int64), scale


class Int8Linear(nn.Module):
    """A Linear layer in int8: weights quantized once here, activations per row in
    forward, products summed exactly in int64, then in float32
    out = (float)acc * (row_scale * weight_scale) + bias."""

    def __init__(self, linear):
        super().__init__()
        self.q, self.scale = quantize_weight_int8(linear.weight)
        self.bias = linear.bias.detach().to(torch.float32).clone()

    def forward(self, x):
        qa, rs = quantize_rows_int8(x.to(torch.float32))
        acc = torch.matmul(qa, self.q.t())  # exact: |acc| < 2^31
        s = rs[..., None] * self.scale
        return acc.to(torch.float32) * s + self.bias


def quantize_int8(model):
    """Replaces every Linear layer of a HeptapodModel (qkv, proj, fc1, fc2, head) in
    place by an Int8Linear; embedding, norms, attention and GELU stay float32."""
    for blk in model.blocks:
        blk.attn.qkv = Int8Linear(blk.attn.qkv)
        blk.attn.proj = Int8Linear(blk.attn.proj)
        blk.mlp.fc1 = Int8Linear(blk.mlp.fc1)
        blk.mlp.fc2 = Int8Linear(blk.mlp.fc2)
    model.head = Int8Linear(model.head)
    return model


# --- generation (section 5) -------------------------------------------------------

def _filtered_sample(logits, mask_token, temperature, top_k, top_p, gen):
    """One token from filter(softmax(logits / tau)) with the mask token excluded.

    top_k (0 = off) keeps the k most probable ids; top_p is then applied to the
    renormalised survivors, keeping the shortest prefix whose mass reaches top_p.
    """
    z = logits.double() / temperature
    z[mask_token] = float("-inf")
    p = torch.softmax(z, 0)
    # Most probable first; equal probabilities keep the lower id first (stable sort).
    order = torch.sort(p, descending=True, stable=True).indices
    ps = p[order]
    n = int((ps > 0).sum())
    if top_k and top_k > 0:
        n = min(n, top_k)
    if top_p < 1.0:
        ps_n = ps[:n] / ps[:n].sum()
        cum = torch.cumsum(ps_n, 0)
        reach = int((cum < top_p).sum()) + 1  # smallest prefix whose mass reaches top_p
        n = min(n, reach)
    keep = ps[:n] / ps[:n].sum()
    idx = int(torch.multinomial(keep.float(), 1, generator=gen))
    return int(order[idx])


ORDERS = ("confidence", "margin", "raster")


def margin_of(P):
    """Top-1 minus top-2 of a probability vector (the mask's entry 0): the
    order `margin`'s score. 0 for equal top probabilities; P[top] alone when
    there is one candidate."""
    top = torch.topk(P, 2).values if P.numel() > 1 else torch.cat([P, P.new_zeros(1)])
    return float(top[0] - top[1])


def generate(model, given, iterations, temperature=0.0, top_k=0, top_p=1.0, seed=0,
             trace=None, remask_noise=0.0, order="confidence", remask=0.0):
    """Section 5: iterative refinement of one grid.

    `given` is an [H][W] LongTensor or nested list with -1 for open cells. Returns a
    list of `iterations` grids (nested lists), the grid after each iteration, with
    re-masked and re-opened cells holding mask_token. With temperature 0 the result is
    exact (argmax ties to the lower id; key ties commit the lower row-major index first).
    If `trace` is a list, one dict per iteration that ran the model is appended:
    t, logits [H*W, V] (float32), conf {open cell: P_c[s_c]}, key {open cell: commit
    key}, order (re-mask order, worst first), n_keep, and for re-opening q {committed
    cell: P_c of its token}, reopen_order (worst first) and n_reopen.
    order: "confidence" ranks open cells by conf, "margin" by P_c's top-1 minus top-2,
    "raster" commits the first open cells in row-major order.
    remask_noise nu > 0 ranks by log(score) + nu * (1 - t/K) * Gumbel instead (not for
    raster); its Gumbel draws come from the same torch generator (not the C engine's
    hash). remask in [0, 1): in each iteration but the last, floor(remask * C) of the C
    committed non-given cells with the lowest q are re-opened.
    """
    K = int(iterations)
    if K < 1:
        raise ValueError("iterations must be >= 1")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    if not (0 <= remask_noise <= 100):
        raise ValueError("remask_noise must be in 0..100")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}")
    if not (0 <= remask < 1):
        raise ValueError("remask must be in [0, 1)")
    hp = model.hp
    V, mask = hp["vocab_size"], hp["mask_token"]
    g = torch.as_tensor(given, dtype=torch.long).clone()
    if g.dim() != 2:
        raise ValueError("given must be [H][W]")
    H, W = g.shape
    flat = g.reshape(-1)
    if bool(((flat < -1) | (flat >= V)).any()):
        raise ValueError("given ids must be -1 (open) or in [0, V)")
    open_ = flat == -1
    n_open = int(open_.sum())
    grid = torch.where(open_, torch.full_like(flat, mask), flat)
    committed = ~open_
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    model.eval()

    def probs(z32):
        z = z32.double().clone()
        z[mask] = float("-inf")
        return z, torch.softmax(z, 0)

    for t in range(1, K + 1):
        todo = [c for c in range(H * W) if not committed[c]]
        reopening = remask > 0 and t < K
        if todo or reopening:
            with torch.no_grad():
                Z = model(grid.reshape(1, H, W))[0].reshape(H * W, V)
            conf, score = {}, {}
            for c in todo:
                z, P = probs(Z[c])
                if temperature == 0:
                    best = z.max()
                    s = int(torch.nonzero(z == best)[0])  # lowest id among ties
                else:
                    s = _filtered_sample(Z[c], mask, temperature, top_k, top_p, gen)
                conf[c] = float(P[s])
                score[c] = margin_of(P) if order == "margin" else conf[c]
                grid[c] = s
            if order == "raster":  # linear: K == n_open commits one cell a step
                n_keep = n_open * (K - t) // K
            else:
                n_keep = math.floor(n_open * math.cos(math.pi / 2 * t / K))
            if order == "raster":
                key = {c: -c for c in todo}  # the first open cells commit first
            elif remask_noise > 0:
                scale = remask_noise * (1 - t / K)
                key = {}
                for c in todo:
                    u = float(torch.rand(1, generator=gen, dtype=torch.float64))
                    u = min(max(u, 2.0 ** -54), 1 - 2.0 ** -54)  # strictly inside (0, 1)
                    ls = math.log(score[c]) if score[c] > 0 else float("-inf")
                    key[c] = ls + scale * -math.log(-math.log(u))
            else:
                key = score
            # Lowest key first; among equal keys the higher index is re-masked first.
            worst = remask_order(key)
            for c in worst[:n_keep]:
                grid[c] = mask
            for c in worst[n_keep:]:
                committed[c] = True
            q, reo, n_reopen = {}, [], 0
            if reopening:
                # Every committed non-given cell, scored by this iteration's forward pass.
                for c in range(H * W):
                    if committed[c] and open_[c]:
                        q[c] = float(probs(Z[c])[1][int(grid[c])])
                reo = remask_order(q)
                n_reopen = math.floor(remask * len(q))
                for c in reo[:n_reopen]:
                    grid[c] = mask
                    committed[c] = False
            if trace is not None:
                trace.append({"t": t, "logits": Z.clone(), "conf": conf, "key": key,
                              "order": worst, "n_keep": n_keep, "q": q,
                              "reopen_order": reo, "n_reopen": n_reopen})
        out.append(grid.reshape(H, W).tolist())
    return out


def remask_order(conf):
    """Cells sorted as section 5 re-masks them: {cell: conf} -> [cell, ...]."""
    return sorted(conf, key=lambda c: (conf[c], -c))
