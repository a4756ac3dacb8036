"""Reference PyTorch models for the EfficientNet and CORnet ports (see tests/reference/__init__).

- efficientnet_b0..b3: torchvision 0.29.1.
- efficientnet_lite0: `efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")`
  (PyPI efficientnet-lite-pytorch 0.1.0).
- cornet_s, cornet_rt: dicarlolab's CORnet when it is installed (pip install
  git+https://github.com/dicarlolab/CORnet; the PyPI package named `cornet` is an unrelated tool),
  else `_cornet_torch()` below, a transcription of its cornet_s.py / cornet_rt.py with the same
  module names, parameters and forward pass.

CORnet-RT sizes its t=0 zero maps for 224x224 inputs, so its fixture is at 224.
"""


def _torchvision(name):
  def build():
    import torchvision
    return getattr(torchvision.models, name)(weights=None, num_classes=1000)
  return build


def _lite0():
  from efficientnet_lite_pytorch import EfficientNet
  return EfficientNet.from_name("efficientnet-lite0")


def _dicarlolab_cornet():
  try:
    import cornet
  except ImportError:
    return None
  return cornet if hasattr(cornet, "CORnet_S") and hasattr(cornet, "CORnet_RT") else None


def _cornet_torch():
  """CORnet-S and CORnet-RT in torch, following dicarlolab/CORnet (cornet_s.py, cornet_rt.py)."""
  from collections import OrderedDict
  import torch
  from torch import nn

  class BlockS(nn.Module):
    def __init__(self, cin, cout, times):
      super().__init__()
      self.times = times
      wide = 4 * cout
      self.conv_input = nn.Conv2d(cin, cout, 1, bias=False)
      self.skip = nn.Conv2d(cout, cout, 1, stride=2, bias=False)
      self.norm_skip = nn.BatchNorm2d(cout)
      self.conv1 = nn.Conv2d(cout, wide, 1, bias=False)
      self.conv2 = nn.Conv2d(wide, wide, 3, stride=2, padding=1, bias=False)
      self.conv3 = nn.Conv2d(wide, cout, 1, bias=False)
      for t in range(times):
        setattr(self, f"norm1_{t}", nn.BatchNorm2d(wide))
        setattr(self, f"norm2_{t}", nn.BatchNorm2d(wide))
        setattr(self, f"norm3_{t}", nn.BatchNorm2d(cout))

    def forward(self, inp):
      x = self.conv_input(inp)
      for t in range(self.times):
        skip = self.norm_skip(self.skip(x)) if t == 0 else x
        x = torch.relu(getattr(self, f"norm1_{t}")(self.conv1(x)))
        stride = 2 if t == 0 else 1
        x = nn.functional.conv2d(x, self.conv2.weight, None, stride, 1)
        x = torch.relu(getattr(self, f"norm2_{t}")(x))
        x = getattr(self, f"norm3_{t}")(self.conv3(x))
        x = torch.relu(x + skip)
      return x

  class Flatten(nn.Module):
    def forward(self, x):
      return x.flatten(1)

  def cornet_s():
    v1 = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)),
        ("norm1", nn.BatchNorm2d(64)), ("nonlin1", nn.ReLU()),
        ("pool", nn.MaxPool2d(3, stride=2, padding=1)),
        ("conv2", nn.Conv2d(64, 64, 3, padding=1, bias=False)),
        ("norm2", nn.BatchNorm2d(64)), ("nonlin2", nn.ReLU())]))
    decoder = nn.Sequential(OrderedDict([
        ("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", Flatten()),
        ("linear", nn.Linear(512, 1000))]))
    return nn.Sequential(OrderedDict([
        ("V1", v1), ("V2", BlockS(64, 128, 2)), ("V4", BlockS(128, 256, 4)),
        ("IT", BlockS(256, 512, 2)), ("decoder", decoder)]))

  class BlockRT(nn.Module):
    def __init__(self, cin, cout, kernel=3, stride=1, out_shape=None):
      super().__init__()
      self.cout, self.out_shape = cout, out_shape
      self.conv_input = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
      self.norm_input = nn.GroupNorm(32, cout)
      self.conv1 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
      self.norm1 = nn.GroupNorm(32, cout)

    def forward(self, inp=None, state=None, batch_size=None):
      if inp is None:
        inp = torch.zeros(batch_size, self.cout, self.out_shape, self.out_shape)
      else:
        inp = torch.relu(self.norm_input(self.conv_input(inp)))
      x = inp if state is None else inp + state
      state = torch.relu(self.norm1(self.conv1(x)))
      return state, state

  class CORnetRT(nn.Module):
    def __init__(self, times=5):
      super().__init__()
      self.times = times
      self.V1 = BlockRT(3, 64, kernel=7, stride=4, out_shape=56)
      self.V2 = BlockRT(64, 128, stride=2, out_shape=28)
      self.V4 = BlockRT(128, 256, stride=2, out_shape=14)
      self.IT = BlockRT(256, 512, stride=2, out_shape=7)
      self.decoder = nn.Sequential(OrderedDict([
          ("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", Flatten()),
          ("linear", nn.Linear(512, 1000))]))

    def forward(self, inp):
      names = ["V1", "V2", "V4", "IT"]
      outputs, states = {"inp": inp}, {}
      for name in names:
        this = inp if name == "V1" else None
        outputs[name], states[name] = getattr(self, name)(this, batch_size=len(inp))
      for _ in range(1, self.times):
        new = {"inp": inp}
        for below, name in zip(["inp"] + names[:-1], names):
          new[name], states[name] = getattr(self, name)(outputs[below], states[name])
        outputs = new
      return self.decoder(outputs["IT"])

  return cornet_s, CORnetRT


def _cornet_s():
  ref = _dicarlolab_cornet()
  return ref.CORnet_S() if ref else _cornet_torch()[0]()


def _cornet_rt():
  ref = _dicarlolab_cornet()
  return ref.CORnet_RT(times=5) if ref else _cornet_torch()[1](times=5)


BUILDERS = {
    "efficientnet_b0": (_torchvision("efficientnet_b0"), 64),
    "efficientnet_b1": (_torchvision("efficientnet_b1"), 64),
    "efficientnet_b2": (_torchvision("efficientnet_b2"), 64),
    "efficientnet_b3": (_torchvision("efficientnet_b3"), 64),
    "efficientnet_lite0": (_lite0, 64),
    "cornet_s": (_cornet_s, 64),
    "cornet_rt": (_cornet_rt, 224),
}
