# make_refs.py: generates the Pillow references in this directory (run once, by hand, with
# Pillow 9.4 / numpy; the C tests never need Python). Inputs are an xorshift32 byte pattern
# that tests/test_preprocess.c regenerates from the seed stored in the case table.
import numpy as np
from PIL import Image

# (in_w, in_h, out_w, out_h, seed, kind): kind 0 = pil resize, 1 = expand2square + resize to
# out_w x out_w (the CLIP path), with pad (122, 116, 104).
CASES = [
    (7, 5, 3, 11, 1, 0), (570, 380, 112, 75, 2, 0), (100, 100, 336, 336, 3, 0),
    (1, 1, 5, 5, 4, 0), (640, 480, 336, 252, 5, 0), (33, 17, 17, 33, 6, 0),
    (17, 17, 17, 40, 7, 0), (40, 17, 13, 17, 8, 0), (300, 200, 7, 5, 9, 0),
    (5, 3, 400, 2, 10, 0), (1000, 3, 37, 3, 11, 0), (250, 251, 251, 250, 12, 0),
    (3, 1, 2, 1, 13, 0), (123, 457, 41, 97, 14, 0),
    (37, 20, 112, 112, 15, 1), (20, 37, 112, 112, 16, 1), (200, 113, 56, 56, 17, 1),
    (64, 64, 64, 64, 18, 1), (9, 500, 112, 112, 19, 1),
]
FULL_LIMIT = 80000  # outputs above this many bytes are checked by digest only (size budget)
PAD = (122, 116, 104)


def xorshift_image(w, h, seed):
    x = seed & 0xFFFFFFFF
    out = np.empty(w * h * 3, np.uint8)
    for i in range(out.size):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x >> 24
    return out.reshape(h, w, 3)


def fnv1a64(b):
    hsh = 0xCBF29CE484222325
    for byte in b:
        hsh = ((hsh ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return hsh


def expand2square(img, color):
    w, h = img.size
    if w == h:
        return img
    s = max(w, h)
    res = Image.new(img.mode, (s, s), color)
    res.paste(img, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return res


table = []
for i, (iw, ih, ow, oh, seed, kind) in enumerate(CASES):
    img = Image.fromarray(xorshift_image(iw, ih, seed * 0x9E3779B1 & 0xFFFFFFFF or 1), "RGB")
    if kind == 1:
        img = expand2square(img, PAD)
    res = np.asarray(img.resize((ow, oh), resample=Image.BICUBIC))
    assert res.shape == (oh, ow, 3)
    digest = fnv1a64(res.tobytes())
    full = res.nbytes <= FULL_LIMIT
    if full:
        np.save("case_%02d.npy" % i, res)
    table.append([iw, ih, ow, oh, seed, kind, int(full), np.array(digest, np.uint64).view(np.int64)])
np.save("cases.npy", np.array(table, np.int64))
