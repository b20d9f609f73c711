"""The strided 1x1 downsample conv of tiny ResNets (`resnet.SubsampledPointwiseConv`): the same map as the
plain strided convolution, and a training step that no longer corrupts memory on CPUs without AVX-512."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from modistill.models.resnet import SubsampledPointwiseConv, resnet18

REPO = Path(__file__).resolve().parent.parent


def test_equals_the_strided_convolution_forward_and_backward():
    torch.manual_seed(0)
    plain = nn.Conv2d(4, 8, kernel_size=1, stride=2, bias=False)
    sub = SubsampledPointwiseConv(4, 8, kernel_size=1, stride=2, bias=False)
    sub.load_state_dict(plain.state_dict())
    assert list(sub.state_dict()) == ["weight"] and sub.stride == (2, 2)
    for size in (8, 9):  # odd sizes: both keep rows 0, 2, ..., so the output is ceil(size / 2)
        x = torch.randn(3, 4, size, size)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = plain(xa), sub(xb)
        torch.testing.assert_close(yb, ya)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(xb.grad, xa.grad)
        torch.testing.assert_close(sub.weight.grad, plain.weight.grad)
        plain.zero_grad()
        sub.zero_grad()


def test_used_only_for_few_input_channels():
    tiny, full = resnet18(width=0.0625), resnet18()
    assert isinstance(tiny.layer2[0].downsample[0], SubsampledPointwiseConv)  # 4 input channels
    assert not any(isinstance(m, SubsampledPointwiseConv) for m in full.modules())
    assert list(tiny.state_dict()) == list(resnet18(width=0.0625).state_dict())


STEP = """
import torch
torch.set_num_threads(1)
from modistill.models.resnet import resnet18
grads = []
for _ in range(8):
    torch.manual_seed(0)
    net = resnet18(width=0.0625).to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 32, 32).to(memory_format=torch.channels_last)
    net(x).sum().backward()
    grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
assert all(torch.equal(g, grads[0]) for g in grads), "gradients differ between identical steps"
"""


def test_tiny_resnet_training_steps_are_repeatable_on_one_thread():
    """Failed on the AVX2-only machine before (glibc abort in the backward, or run-to-run gradients); the
    tests' tiny models and every 1-thread torchrun worker hit it."""
    p = subprocess.run([sys.executable, "-c", STEP], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
