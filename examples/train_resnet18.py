#!/usr/bin/python3
"""Trains a torchvision ResNet-18 for a few steps on a softpipe dataset: the loader's tensors go
straight into the model, no DataLoader, no worker processes.

    /usr/bin/python3 examples/train_resnet18.py DATASET [--steps 20] [--batch-size 64] [--size 224]
"""
import argparse
import time

import torch
import torchvision

import softpipe


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    loader = softpipe.Loader(args.dataset, batch_size=args.batch_size, size=args.size,
                             threads=args.threads, seed=0, drop_last=True)
    classes = len(softpipe.Dataset(args.dataset).classes or []) or 1000
    model = torchvision.models.resnet18(num_classes=classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    step, t0 = 0, time.perf_counter()
    while step < args.steps:
        for images, labels in loader:  # one epoch; the next pass starts the next epoch
            loss = loss_fn(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            print(f"step {step:3d}  loss {loss.item():.4f}  epoch {loader.state_dict()['epoch']}")
            if step == args.steps:
                break
    st = loader.stats()
    print(f"{step} steps in {time.perf_counter() - t0:.1f} s; loader stall share "
          f"{100 * st['stall_share']:.1f}% (input-bound if high), decode {st['decode_s']:.1f} s")


if __name__ == "__main__":
    main()
