#!/usr/bin/python3
"""Self-check of tools/heptapod_ref.py against MODEL.md, written as naive transcriptions
of the page (per-cell loops, scalar RoPE) that the vectorised reference must match.

    /usr/bin/python3 tools/test_ref.py
"""

import math
import os
import struct
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heptapod_ref as ref  # noqa: E402
import selftest  # noqa: E402

torch.set_num_threads(1)


def meta(**kw):
    md = {"format": "heptapod", "arch": "heptapod-v1", "tokenizer": "none",
          "max_height": "16", "max_width": "16", "vocab_size": "11", "dim": "16",
          "depth": "2", "heads": "2", "window": "1", "mask_token": "10"}
    md.update({k: str(v) for k, v in kw.items()})
    return md


def tiny_model(seed=0, **kw):
    m = ref.HeptapodModel(ref.parse_hparams(meta(**kw)))
    # Large enough weights that attention is far from uniform.
    return ref.init_random(m, seed, std=0.2, overrides={"tok_emb.weight": 1.0}).eval()


# --- naive transcriptions of MODEL.md ------------------------------------------------

def naive_rope(t, y, x, base):
    """Section 3.1 pseudo-code on one head vector (list of floats)."""
    t = list(t)
    dh = len(t)
    m = dh // 2
    for off, p in ((0, y), (m, x)):
        for j in range(m // 2):
            w = base ** (-2 * j / m)
            a, b = t[off + j], t[off + j + m // 2]
            t[off + j] = a * math.cos(p * w) - b * math.sin(p * w)
            t[off + j + m // 2] = b * math.cos(p * w) + a * math.sin(p * w)
    return t


def neighbours(y, x, H, W, r, d):
    if r == ref.GLOBAL:
        return [(yy, xx) for yy in range(H) for xx in range(W)]
    return [(y + d * i, x + d * j) for i in range(-r, r + 1) for j in range(-r, r + 1)
            if 0 <= y + d * i < H and 0 <= x + d * j < W]


def naive_attention(q, k, v, r, d):
    """Section 3.2, one cell at a time; q, k, v [B, nh, H, W, dh] float64."""
    B, nh, H, W, dh = q.shape
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(nh):
            for y in range(H):
                for x in range(W):
                    nb = neighbours(y, x, H, W, r, d)
                    s = torch.stack([q[b, h, y, x] @ k[b, h, yy, xx] for yy, xx in nb])
                    p = torch.softmax(s / math.sqrt(dh), 0)
                    out[b, h, y, x] = sum(p[n] * v[b, h, yy, xx] for n, (yy, xx) in enumerate(nb))
    return out


def naive_forward(model, grid):
    """Section 3 pseudo-code for one grid, cell by cell, in float64."""
    hp = model.hp
    P = {k: v.double() for k, v in model.state_dict().items()}
    D, nh, eps = hp["dim"], hp["heads"], hp["norm_eps"]
    dh = D // nh
    H, W = len(grid), len(grid[0])

    def ln(x, name):
        mu = x.mean()
        var = ((x - mu) ** 2).mean()
        return (x - mu) / math.sqrt(var + eps) * P[name + ".weight"] + P[name + ".bias"]

    def lin(x, name):
        return P[name + ".weight"] @ x + P[name + ".bias"]

    def gelu(x):
        return torch.tensor([0.5 * e * (1 + math.erf(e / math.sqrt(2))) for e in x.tolist()],
                            dtype=torch.float64)

    h = {(y, x): P["tok_emb.weight"][grid[y][x]].clone() for y in range(H) for x in range(W)}
    if "pos_emb.weight" in P:  # the optional table: entry (y, x) counted from the top left
        for (y, x) in h:
            h[(y, x)] += P["pos_emb.weight"][y][x]
    for l in range(hp["depth"]):
        pre = f"blocks.{l}."
        q, k, v = {}, {}, {}
        for c, hc in h.items():
            u = ln(hc, pre + "norm1")
            qkv = lin(u, pre + "attn.qkv")
            q[c], k[c], v[c] = qkv[:D], qkv[D:2 * D], qkv[2 * D:]
            for j in range(nh):
                sl = slice(j * dh, (j + 1) * dh)
                q[c][sl] = torch.tensor(naive_rope(q[c][sl].tolist(), c[0], c[1], hp["rope_base"]),
                                        dtype=torch.float64)
                k[c][sl] = torch.tensor(naive_rope(k[c][sl].tolist(), c[0], c[1], hp["rope_base"]),
                                        dtype=torch.float64)
        new = {}
        for (y, x), hc in h.items():
            a = torch.zeros(D, dtype=torch.float64)
            nb = neighbours(y, x, H, W, hp["window"][l], hp["dilation"][l])
            for j in range(nh):
                sl = slice(j * dh, (j + 1) * dh)
                s = torch.stack([q[(y, x)][sl] @ k[n][sl] for n in nb]) / math.sqrt(dh)
                p = torch.softmax(s, 0)
                a[sl] = sum(p[i] * v[n][sl] for i, n in enumerate(nb))
            hc = hc + lin(a, pre + "attn.proj")
            u = ln(hc, pre + "norm2")
            new[(y, x)] = hc + lin(gelu(lin(u, pre + "mlp.fc1")), pre + "mlp.fc2")
        h = new
    Z = torch.zeros(H, W, hp["vocab_size"], dtype=torch.float64)
    for (y, x), hc in h.items():
        Z[y, x] = lin(ln(hc, "norm"), "head")
    return Z


# --- tests ------------------------------------------------------------------------------

def test_rope_matches_pseudo_code():
    dh, H, W, base = 16, 5, 7, 10000.0
    cos, sin = ref.rope_tables(H, W, dh, base)
    t = torch.randn(H, W, dh, dtype=torch.float64)
    got = ref.rope2d(t, cos.double(), sin.double())
    for y in range(H):
        for x in range(W):
            want = torch.tensor(naive_rope(t[y, x].tolist(), y, x, base), dtype=torch.float64)
            assert torch.allclose(got[y, x], want, atol=1e-6), (y, x)


def test_rope_scores_depend_only_on_offset():
    dh, H, W = 16, 12, 12
    cos, sin = ref.rope_tables(H, W, dh, 10000.0)
    g = torch.Generator().manual_seed(1)
    qv, kv = torch.randn(dh, generator=g), torch.randn(dh, generator=g)
    qr = ref.rope2d(qv.expand(H, W, dh), cos, sin)
    kr = ref.rope2d(kv.expand(H, W, dh), cos, sin)
    s1 = float(qr[2, 3] @ kr[5, 1])     # offset (+3, -2)
    s2 = float(qr[7, 9] @ kr[10, 7])    # offset (+3, -2)
    s3 = float(qr[2, 3] @ kr[1, 5])     # offset (-1, +2), a different one
    s4 = float(qr[2, 3] @ kr[5, 3])     # offset (+3, 0): rows and columns both matter
    assert abs(s1 - s2) < 1e-4, (s1, s2)
    assert abs(s1 - s3) > 1e-2 and abs(s1 - s4) > 1e-2, (s1, s3, s4)


def test_neighbour_counts():
    # Corner with r = 3 sees 16 cells, an inner cell 49: uniform attention (q = 0) on a
    # value that is 1 only at the query cell yields 1 / |neighbour set|.
    H, W, dh = 11, 11, 4
    q = torch.zeros(1, 1, H, W, dh)
    k = torch.randn(1, 1, H, W, dh)
    for (y, x), n in (((0, 0), 16), ((5, 5), 49), ((0, 5), 28), ((10, 10), 16)):
        v = torch.zeros(1, 1, H, W, dh)
        v[0, 0, y, x] = 1.0
        a = ref.local_attention(q, k, v, 3, 1)
        assert abs(float(a[0, 0, y, x, 0]) - 1.0 / n) < 1e-6, ((y, x), float(a[0, 0, y, x, 0]))
    assert len(neighbours(0, 0, H, W, 3, 1)) == 16 and len(neighbours(5, 5, H, W, 3, 1)) == 49


def test_attention_matches_naive():
    g = torch.Generator().manual_seed(2)
    for (H, W, r, d) in [(5, 6, 1, 1), (4, 7, 3, 1), (6, 5, 2, 2), (1, 9, 2, 3), (7, 1, 1, 2),
                         (1, 1, 3, 1), (3, 4, 0, 1), (3, 4, 9, 1), (5, 5, ref.GLOBAL, 1)]:
        q, k, v = (torch.randn(2, 2, H, W, 8, generator=g, dtype=torch.float64) * 2
                   for _ in range(3))
        got = ref.local_attention(q, k, v, r, d)
        want = naive_attention(q, k, v, r, d)
        err = float((got - want).abs().max())
        assert err < 1e-10, ((H, W, r, d), err)


def test_forward_matches_naive_model():
    cases = [({"window": "1,2", "mlp_hidden": 20}, [(3, 4), (1, 5)]),
             ({"depth": 3, "heads": 4, "window": "2,0,global", "dilation": "2,1,3",
               "rope_base": 100, "norm_eps": "1e-3"}, [(4, 5), (2, 1)])]
    for kw, sizes in cases:
        m = tiny_model(3, **kw)
        g = torch.Generator().manual_seed(4)
        for H, W in sizes:
            grid = torch.randint(0, 11, (H, W), generator=g)
            with torch.no_grad():
                z = m(grid.unsqueeze(0))[0].double()
            want = naive_forward(m, grid.tolist())
            err = float((z - want).abs().max())
            assert err < 1e-4 * (1 + float(want.abs().max())), (kw, (H, W), err)
            assert float(want.abs().max()) > 1.0  # weights large enough to mean something


def test_global_equals_large_window_and_batches_independent():
    a = tiny_model(5, window="global,1")
    b = ref.HeptapodModel(ref.parse_hparams(meta(window="40,1", dilation="1")))
    c = ref.HeptapodModel(ref.parse_hparams(meta(window="global,1", dilation="3,1")))
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    x = torch.randint(0, 11, (3, 6, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        za, zb, zc = a(x), b(x), c(x)
        assert float((za - zb).abs().max()) < 1e-5
        assert float((za - zc).abs().max()) == 0.0  # dilation does not apply to global
        # A window of 2 is different from global on this grid (the test can fail).
        d = ref.HeptapodModel(ref.parse_hparams(meta(window="2,1")))
        d.load_state_dict(a.state_dict())
        assert float((za - d(x)).abs().max()) > 1e-2
        for i in range(3):
            assert float((a(x[i:i + 1])[0] - za[i]).abs().max()) < 1e-5


def test_position_table():
    md = meta(window="global,1", max_height=5, max_width=7)
    m = ref.HeptapodModel(dict(ref.parse_hparams(md), pos_emb=True))
    ref.init_random(m, 9, std=0.2, overrides={"tok_emb.weight": 1.0, "pos_emb.weight": 1.0})
    m.eval()
    g = torch.Generator().manual_seed(10)
    for H, W in ((5, 7), (2, 3), (1, 1)):
        grid = torch.randint(0, 11, (H, W), generator=g)
        with torch.no_grad():
            z = m(grid.unsqueeze(0))[0].double()
        want = naive_forward(m, grid.tolist())
        assert float((z - want).abs().max()) < 1e-4 * (1 + float(want.abs().max())), (H, W)
    # The table matters: without it the logits move.
    plain = ref.HeptapodModel(ref.parse_hparams(md))
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if k != ref.POS_EMB})
    with torch.no_grad():
        assert float((plain(grid.unsqueeze(0)) - m(grid.unsqueeze(0))).abs().max()) > 1e-2
        try:
            m(torch.zeros(1, 6, 7, dtype=torch.long))
        except ValueError:
            pass
        else:
            raise AssertionError("a grid taller than the table was accepted")
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "pos.safetensors")
        ref.save_checkpoint(p, m, md, "F32")
        m2, _ = ref.load_checkpoint(p)
        assert m2.hp["pos_emb"] and torch.equal(m2.pos_emb.weight, m.pos_emb.weight)
        # A table of the wrong shape is refused, naming the file and the tensor.
        sd = dict(m.state_dict())
        sd[ref.POS_EMB] = sd[ref.POS_EMB][:, :6]
        try:
            ref.save_checkpoint(p, sd, md, "F32")
        except ValueError as e:
            assert "pos_emb.weight" in str(e) and p in str(e), str(e)
        else:
            raise AssertionError("save accepted a table of the wrong shape")


def test_safetensors_round_trip():
    m = tiny_model(7, window="1,global", mlp_hidden=12)
    md = meta(window="1,global", mlp_hidden=12)
    md["train_note"] = "informational keys survive"
    sd = m.state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        for dt, conv in (("F32", torch.float32), ("F16", torch.float16),
                         ("BF16", torch.bfloat16)):
            p = os.path.join(tmp, f"m_{dt}.safetensors")
            ref.save_checkpoint(p, m, md, dt)
            m2, md2 = ref.load_checkpoint(p)
            assert md2["train_note"] == md["train_note"] and md2["window"] == "1,global"
            for k, v in m2.state_dict().items():
                want = sd[k].to(conv).float()
                assert v.dtype == torch.float32 and torch.equal(v, want), (dt, k)
            if dt != "F32":  # rounding really happened
                assert any(not torch.equal(m2.state_dict()[k], sd[k]) for k in sd)
            raw = open(p, "rb").read()
            (n,) = struct.unpack("<Q", raw[:8])
            assert (8 + n) % 8 == 0
            _, _, dts = ref.read_safetensors(p)
            assert set(dts.values()) == {dt}
        # BF16 bit pattern of 1.0 and -2.0 (sign, exponent, 7-bit mantissa).
        sd2 = {k: v.clone() for k, v in sd.items()}
        sd2["head.bias"][0], sd2["head.bias"][1] = 1.0, -2.0
        p = os.path.join(tmp, "bits.safetensors")
        ref.save_checkpoint(p, sd2, md, "BF16")
        raw = open(p, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        import json
        off = json.loads(raw[8:8 + n])["head.bias"]["data_offsets"][0] + 8 + n
        assert raw[off:off + 4] == bytes([0x80, 0x3F, 0x00, 0xC0])


def test_loader_refuses_bad_files():
    m = tiny_model(8)
    md = meta()
    with tempfile.TemporaryDirectory() as tmp:
        good = os.path.join(tmp, "good.safetensors")
        ref.save_checkpoint(good, m, md)
        raw = open(good, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        import json
        hdr = json.loads(raw[8:8 + n])

        def rewrite(h, body=None):
            hb = json.dumps(h).encode()
            return struct.pack("<Q", len(hb)) + hb + (raw[8 + n:] if body is None else body)

        bad = {
            "truncated": raw[:-5],
            "short": raw[:5],
            "json": struct.pack("<Q", 5) + b"{nope" + raw[8 + n:],
            "header_past_end": struct.pack("<Q", len(raw)) + raw[8:],
        }
        h = json.loads(json.dumps(hdr))
        h["norm.bias"]["data_offsets"] = [o - 4 for o in h["norm.bias"]["data_offsets"]]
        bad["overlap"] = rewrite(h)
        h = json.loads(json.dumps(hdr))
        del h["head.bias"]
        bad["missing"] = rewrite(h, raw[8 + n:-44])
        h = json.loads(json.dumps(hdr))
        h["head.bias"]["shape"] = [11, 1]
        bad["shape"] = rewrite(h)
        bad["trailing"] = raw + b"\0" * 4
        h = json.loads(json.dumps(hdr))
        h["__metadata__"]["heads"] = "3"
        bad["metadata"] = rewrite(h)
        h = json.loads(json.dumps(hdr))
        h["head.bias"]["dtype"] = "I32"
        bad["dtype"] = rewrite(h)
        for name, data in bad.items():
            p = os.path.join(tmp, f"bad_{name}.safetensors")
            open(p, "wb").write(data)
            try:
                ref.load_checkpoint(p)
            except ValueError as e:
                assert p in str(e), (name, str(e))
            else:
                raise AssertionError(f"loader accepted {name}")
        ref.load_checkpoint(good)


def test_parse_hparams():
    hp = ref.parse_hparams(meta(depth=3, window="2,global,0"))
    assert hp["window"] == [2, -1, 0] and hp["dilation"] == [1, 1, 1]
    assert hp["mlp_hidden"] == 64 and hp["rope_base"] == 10000.0 and hp["norm_eps"] == 1e-5
    assert ref.parse_hparams(ref.hparams_metadata(hp)) == hp
    for bad in ({"heads": 4, "dim": 8}, {"window": "1,2,3"}, {"window": "-1"},
                {"dilation": "0"}, {"mask_token": 11}, {"format": "gguf"},
                {"vocab_size": "1e3"}, {"tokenizer": "byte"}, {"rope_base": 1}):
        try:
            ref.parse_hparams(meta(**bad))
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


class FixedLogits(torch.nn.Module):
    """Returns preset logits [H*W, V] whatever the grid holds."""

    def __init__(self, logits, V, mask):
        super().__init__()
        self.z = logits
        self.hp = {"vocab_size": V, "mask_token": mask}
        self.calls = []

    def forward(self, tokens):
        self.calls.append(tokens.clone())
        H, W = tokens.shape[1:]
        return self.z.reshape(1, H, W, -1)


def test_generate_tie_rules():
    V, mask = 4, 3
    # Equal logits for ids 1 and 2 (tie -> 1), the mask token highest of all (excluded),
    # the same in every cell: every conf ties, so the highest indices are re-masked first.
    z = torch.tensor([0.0, 2.0, 2.0, 9.0]).repeat(5, 1)
    m = FixedLogits(z, V, mask)
    out = ref.generate(m, [[-1] * 5], 2)
    k1 = math.floor(5 * math.cos(math.pi / 2 * 1 / 2))  # 3
    assert k1 == 3
    assert out[0] == [[1, 1, mask, mask, mask]], out
    assert out[1] == [[1, 1, 1, 1, 1]], out
    # Distinct confidences: the least confident cells are re-masked, given cells stay.
    z = torch.tensor([[5.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 3.0, 0],
                      [0.5, 0, 0, 0], [0, 0, 0, 0], [0, 0, 4.0, 0]])
    m = FixedLogits(z, V, mask)
    out = ref.generate(m, [[-1, -1, -1], [-1, 2, -1]], 3)
    # N_open 5: keep floor(5 cos(pi/6)) = 4 masked after t=1, floor(5 cos(pi/3)) = 2 after t=2.
    assert out[0] == [[0, mask, mask], [mask, 2, mask]], out
    assert out[1] == [[0, mask, 2], [mask, 2, 2]], out
    assert out[2] == [[0, 1, 2], [0, 2, 2]], out
    assert len(m.calls) == 3 and int(m.calls[0][0, 1, 1]) == 2 and int(m.calls[0][0, 0, 0]) == mask


def test_generate_sampling_is_seeded_and_filtered():
    m = tiny_model(9, window="global,1")
    given = [[-1] * 5 for _ in range(4)]
    given[1][2] = 4
    a = ref.generate(m, given, 3, temperature=1.0, top_k=3, top_p=0.9, seed=11)
    b = ref.generate(m, given, 3, temperature=1.0, top_k=3, top_p=0.9, seed=11)
    assert a == b
    c = ref.generate(m, given, 3, temperature=5.0, seed=12)
    assert c != a and all(v != 10 for row in c[-1] for v in row)
    # top_k = 1 is greedy whatever the temperature.
    assert ref.generate(m, given, 3, temperature=3.0, top_k=1, seed=1) == \
        ref.generate(m, given, 3)


def test_bf16_precision():
    # Nearest even, NaN kept; 1 + 2^-8 is a tie that goes down, 1 + 3 * 2^-8 up.
    x = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, float("nan")])
    r = ref.bf16_round(x)
    assert r[:3].tolist() == [1.0, 1 + 2 ** -6, 1 + 2 ** -7] and math.isnan(float(r[3]))
    m = tiny_model(21)
    tokens = torch.randint(0, 11, (1, 3, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z32 = m(tokens)
        lin = m.head
        u = torch.randn(5, lin.in_features, generator=torch.Generator().manual_seed(3))
        ref.set_precision_bf16(m)
        assert type(m.blocks[0].attn.qkv) is ref.Bf16Linear and type(m.head) is ref.Bf16Linear
        want = (ref.bf16_round(u).double() @ ref.bf16_round(lin.weight).double().T).float() \
            + lin.bias
        assert torch.equal(lin(u), want)
        zb = m(tokens)
    d = float((zb - z32).abs().max())
    assert 0 < d < 0.05 * float(z32.abs().max()), d


def _f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def _rne_clamp(x):
    x = max(-127.0, min(127.0, x))
    return int(round(x))  # Python's round() is half to even


def test_int8_linear_matches_section_6_1():
    """Int8Linear against a per-element transcription of MODEL.md 6.1 in Python floats
    rounded to float32 after every operation; bit for bit, incl. zero and tiny rows."""
    g = torch.Generator().manual_seed(5)
    lin = torch.nn.Linear(13, 7)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(7, 13, generator=g))
        lin.weight[3].zero_()
        lin.bias.copy_(torch.randn(7, generator=g))
    x = torch.randn(5, 13, generator=g) * 3
    x[1].zero_()
    x[2] *= 1e-32
    got = ref.Int8Linear(lin)(x)
    W, b = lin.weight.tolist(), lin.bias.tolist()
    for r, a in enumerate(x.tolist()):
        a = [_f32(v) for v in a]
        m = max(abs(v) for v in a)
        tiny = m < 2.0 ** -100
        inv = 0.0 if tiny else _f32(127.0 / m)
        rs = 0.0 if tiny else _f32(m / 127.0)
        qa = [_rne_clamp(_f32(v * inv)) for v in a]
        for c in range(7):
            w = [_f32(v) for v in W[c]]
            wm = max(abs(v) for v in w)
            ws = 1.0 if wm < 2.0 ** -100 else _f32(wm / 127.0)
            qw = [0 if wm < 2.0 ** -100 else _rne_clamp(_f32(v / ws)) for v in w]
            acc = sum(p * q for p, q in zip(qa, qw))
            want = _f32(_f32(_f32(acc) * _f32(rs * ws)) + _f32(b[c]))
            assert float(got[r, c]) == want, (r, c, float(got[r, c]), want)


def test_int8_model_is_close_to_f32_and_batch_independent():
    m = tiny_model(3)
    q = ref.quantize_int8(tiny_model(3))
    t = torch.randint(0, 11, (2, 5, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z, zq = m(t), q(t)
        alone = q(t[1:])
    rel = float((z - zq).abs().max() / z.abs().max())
    assert 0 < rel < 0.1, rel
    assert torch.equal(alone[0], zq[1])


def test_generate_orders_and_reopening():
    V, mask = 4, 3
    # Cell 0: confidence 0.52, margin 0.05; cell 1: all equal, margin 0; cell 2:
    # confidence and margin near 1.
    z = torch.tensor([[3.0, 2.9, -9, 0], [0, 0, 0, 0], [1.0, -9, -9, 0]])
    m = FixedLogits(z, V, mask)
    # Two iterations over 3 open cells: cosine keeps floor(3 cos(pi/4)) = 2 masked.
    conf = ref.generate(m, [[-1, -1, -1]], 2)
    marg = ref.generate(m, [[-1, -1, -1]], 2, order="margin")
    assert marg[0] == [[mask, mask, 0]], marg  # the widest margin commits first
    assert conf[0][0][2] == 0 and marg[1] == [[0, 0, 0]]
    # Raster: linear schedule, first open cells first; K == open cells: one a step.
    ras = ref.generate(m, [[-1, -1, -1]], 3, order="raster")
    assert ras == [[[0, mask, mask]], [[0, 0, mask]], [[0, 0, 0]]], ras
    # Re-opening: floor(0.5 * C) of the committed cells, least probable first, in every
    # iteration but the last; the given cell (1) is never re-opened.
    z = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 6.0, 0]])
    m = FixedLogits(z, V, mask)
    trace = []
    out = ref.generate(m, [[-1, 1, -1, -1]], 3, remask=0.5, trace=trace)
    # t=1: keep floor(3 cos(pi/6)) = 2 masked, cell 3 (P 0.998) commits; C = 1: none re-opened.
    assert [it["n_reopen"] for it in trace] == [0, 1, 0], trace
    # t=2: keep 1; cells 0 and 3 committed (C 2), cell 0 (P 0.987) < cell 3: re-opened.
    assert out[1] == [[mask, 1, mask, 2]], out
    assert out[2] == [[0, 1, 2, 2]], out
    for bad in ({"order": "random"}, {"remask": 1.0}, {"remask": -0.1},
                {"remask": float("nan")}):
        try:
            ref.generate(m, [[-1, 1, -1, -1]], 2, **bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


if __name__ == "__main__":
    selftest.run(globals())
