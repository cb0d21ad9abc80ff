#!/usr/bin/python3
"""Draws docs/resize_compare.png: torchvision's Resize+CenterCrop (PIL, bilinear with antialias)
next to softpipe's loader output (crop-aware decode at a reduced DCT scale, one-pass resize) for
the same images, with their absolute difference amplified 8x, and prints the mean absolute
difference per image (0..255 units).

    PYTHONPATH=build/python /usr/bin/python3 scripts/resize_compare.py [OUT.png] [--size 224]
"""
import argparse
import os
import tempfile

import numpy as np
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_images
from torchvision import transforms as T

import softpipe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="docs/resize_compare.png")
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "src", "photos")
    os.makedirs(src)
    photos = load_sample_images().images  # china.jpg, flower.jpg (427 x 640)
    names = []
    for i, arr in enumerate(photos):
        for j, box in enumerate([(0, 0, 640, 427), (100, 50, 500, 400)]):
            name = f"{i}{j}.jpg"
            Image.fromarray(arr).crop(box).save(os.path.join(src, name), quality=90)
            names.append(name)
    ds = os.path.join(tmp, "ds")
    softpipe.pack(os.path.join(tmp, "src"), ds)
    loader = softpipe.Loader(ds, batch_size=len(names), size=args.size, crop="center", flip=0.0,
                             dtype="uint8", layout="NHWC", shuffle="none")
    images, _, ids = next(loader.batches())
    ours = np.asarray(images)
    d = softpipe.Dataset(ds)
    tf = T.Compose([T.Resize(int(args.size / 0.875)), T.CenterCrop(args.size)])
    s = args.size
    sheet = Image.new("RGB", (3 * s + 40, len(names) * (s + 10) + 30), "white")
    draw = ImageDraw.Draw(sheet)
    for x, title in ((10, "torchvision (PIL)"), (s + 20, "softpipe loader"), (2 * s + 30, "|diff| x 8")):
        draw.text((x, 8), title, fill="black")
    for k, i in enumerate(np.asarray(ids).tolist()):
        ref = np.asarray(tf(Image.open(os.path.join(tmp, "src", d.key(i))).convert("RGB")))
        diff = np.abs(ours[k].astype(np.int16) - ref.astype(np.int16))
        y = 30 + k * (s + 10)
        sheet.paste(Image.fromarray(ref), (10, y))
        sheet.paste(Image.fromarray(ours[k]), (s + 20, y))
        sheet.paste(Image.fromarray(np.clip(diff * 8, 0, 255).astype(np.uint8)), (2 * s + 30, y))
        print(f"{d.key(i)}: mean |diff| = {diff.mean():.2f} (0..255)")
    sheet.save(args.out, optimize=True)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
