#!/usr/bin/python3
"""Reference outputs for tests/test_load_decode.c, made with Pillow.

Run with Debian's interpreter (Pillow 9.4 on libjpeg-turbo 2.1.5), from anywhere:

    /usr/bin/python3 tests/data/load/make_fixtures.py

It writes, next to itself:
  a.png  61x47 RGB, synthetic (smooth sine + ramp + checker texture)
  b.png  40x90 LA (grey + alpha): the loader drops alpha, as PIL's convert("RGB") does
  c.jpg  97x73 RGB JPEG, quality 90, 4:2:0 (PIL and softpipe decode it with the same libjpeg)
  d.jpg  33x21 CMYK JPEG (PIL writes Adobe-inverted CMYK and reads it back the same way)
  e.png  23x17 palette PNG with a transparent entry
  cases.txt  one line per case: file x0 y0 x1 y1 out_w out_h flip offset
  refs.bin   the expected RGB bytes of every case, concatenated at `offset`

Each expected output is exactly:

    im = Image.open(file).convert("RGB")
    ref = im.resize((out_w, out_h), Image.BILINEAR, box=(x0, y0, x1, y1))
    if flip: ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
    ref.tobytes()

i.e. Pillow's antialiased triangle filter on a (possibly sub-pixel) box, then a horizontal flip.
The C test decodes the same file with sp__decode_sample (box = x0, y0, x1 - x0, y1 - y0) and
asserts a mean absolute difference <= 1.0 per byte (identity cases of lossless files: exact).
"""
import math
import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def synth(w, h):
    im = Image.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            r = int(127.5 + 127.5 * math.sin(x * 0.37 + y * 0.11))
            g = (x * 255) // max(1, w - 1)
            b = ((x // 4 + y // 4) % 2) * 200 + (x * y) % 37
            px[x, y] = (r, g, b)
    return im


def make_images():
    synth(61, 47).save(os.path.join(HERE, "a.png"))
    la = Image.new("LA", (40, 90))
    px = la.load()
    for y in range(90):
        for x in range(40):
            px[x, y] = ((x * 7 + y * 3) % 256, (x * 11) % 256)
    la.save(os.path.join(HERE, "b.png"))
    synth(97, 73).save(os.path.join(HERE, "c.jpg"), quality=90, subsampling=2)
    synth(33, 21).convert("CMYK").save(os.path.join(HERE, "d.jpg"), quality=95)
    p = synth(23, 17).quantize(colors=16)
    p.save(os.path.join(HERE, "e.png"), transparency=3)


CASES = [
    # file, box (x0, y0, x1, y1), out (w, h), flip
    ("a.png", (0, 0, 61, 47), (61, 47), 0),  # identity: exact
    ("a.png", (0, 0, 61, 47), (96, 80), 0),  # upscale
    ("a.png", (3.25, 5.5, 50.75, 40.125), (20, 15), 0),  # sub-pixel box, downscale
    ("a.png", (3.25, 5.5, 50.75, 40.125), (20, 15), 1),  # same, flipped
    ("a.png", (10.5, 0, 61, 47), (7, 33), 0),  # touches the right, top and bottom edges
    ("a.png", (0.3, 0.7, 1.9, 2.2), (5, 5), 0),  # a tiny box, blown up
    ("a.png", (0, 0, 61, 47), (1, 1), 0),  # everything into one pixel
    ("b.png", (2.5, 7.75, 37.0, 88.5), (16, 41), 1),
    ("c.jpg", (0, 0, 97, 73), (97, 73), 0),  # identity: the same libjpeg decode, exact
    ("c.jpg", (13.7, 9.2, 80.1, 60.3), (32, 24), 1),
    ("c.jpg", (0, 0, 97, 73), (120, 90), 0),
    ("d.jpg", (0, 0, 33, 21), (33, 21), 0),  # CMYK -> RGB exactly as PIL converts
    ("e.png", (0, 0, 23, 17), (23, 17), 0),  # palette + transparency -> RGB
    ("e.png", (1.5, 2.5, 20.25, 16.0), (9, 6), 0),
]


def main():
    make_images()
    blob = bytearray()
    lines = []
    for name, box, size, flip in CASES:
        im = Image.open(os.path.join(HERE, name)).convert("RGB")
        ref = im.resize(size, Image.BILINEAR, box=box)
        if flip:
            ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
        data = ref.tobytes()
        assert len(data) == size[0] * size[1] * 3
        lines.append("%s %r %r %r %r %d %d %d %d" % (name, float(box[0]), float(box[1]),
                                                      float(box[2]), float(box[3]), size[0],
                                                      size[1], flip, len(blob)))
        blob += data
    with open(os.path.join(HERE, "refs.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(HERE, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d cases, %d bytes of references" % (len(CASES), len(blob)))


if __name__ == "__main__":
    main()
