"""torchvision 0.29.1 references of `mdgeom.models.resnet` and `mdgeom.models.shufflenet`
(random initialisation, `weights=None`; nothing is downloaded)."""


def _torchvision(name):
  def build():
    import torchvision
    return getattr(torchvision.models, name)(weights=None)
  return build


# Image size 64 keeps the fixtures fast; the live tests use 224.
BUILDERS = {name: (_torchvision(name), 64) for name in (
    "resnet18", "resnet34", "resnet50", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0")}
