"""`twin_reference`: which torch model a twin's state dict belongs to (the parity reference `convert`
compares against) and where a network built for a twin's weights is not the twin's function at an
input shape. Data and rules only: imports no backend, reads no file."""

from __future__ import annotations

from anyshape.weights.torch_sets import HF_URL, TWIN_SOURCE
from anyshape.weights.weight_set import WeightSet

__all__ = ["reference_model", "twin_difference"]


def reference_model(arch, weight_set: WeightSet | None = None, options: dict | None = None) -> tuple[str, str]:
    """(framework, model name) of the torch model a state dict of network `arch` belongs to: timm's
    model named in the set's hub address, torchvision's function of the network's name, or for a
    file that does not say the family's twin (timm's `tf_efficientnet_b<N>`, `inception_resnet_v2`,
    `tf_mobilenetv3_<type>_<width>` by the build `options` alpha and minimalistic, `mobilenetv1_<width>`
    by alpha)."""
    framework = TWIN_SOURCE.get(arch.family, "torchvision")
    url = weight_set.url if weight_set is not None else None
    hub = HF_URL.split("{")[0]
    if framework == "timm" and url and url.startswith(hub):
        return "timm", url[len(hub) :].split("/")[0].split(".")[0]
    if arch.family == "efficientnet":
        return "timm", f"tf_{arch.name}"
    if arch.family == "efficientnet_v2":
        return "timm", f"tf_efficientnetv2_{arch.name.rsplit('_', 1)[1]}"
    if arch.family == "convnext":
        return "timm", arch.name
    if arch.family == "xception":
        return "timm", "legacy_xception"
    if arch.family == "nasnet":
        return "timm", "nasnetalarge"
    if arch.family == "mobilenet":  # timm registers mobilenetv1_100 and _125
        options = {**dict(weight_set.overrides if weight_set is not None else ()), **(options or {})}
        return "timm", f"mobilenetv1_{round(100 * options.get('alpha', 1.0)):03d}"
    if arch.family == "mobilenet_v3":
        options = {**dict(weight_set.overrides if weight_set is not None else ()), **(options or {})}
        alpha = options.get("alpha", 1.0)
        width = "minimal_100" if options.get("minimalistic") else f"{round(100 * alpha):03d}"
        return "timm", f"tf_mobilenetv3_{arch.name.rsplit('_', 1)[1]}_{width}"
    return framework, arch.name


def twin_difference(arch, hw, include_top: bool) -> str | None:
    """Why network `arch` with input (H, W) (None for a free side) is not its PyTorch twin's function,
    or None when it is."""
    if arch.family == "vgg" and include_top and tuple(hw) != (224, 224):
        return (
            f"{arch.keras_name}'s top differs from torchvision's away from 224 x 224: torchvision resamples "
            "block5_pool to 7 x 7 with an adaptive average pool at every size, anyshape applies fc1 to each "
            "7 x 7 window of it and averages the scores (the same function at 224 x 224 only; without the "
            "top, the features are the same at every size)"
        )
    return None
