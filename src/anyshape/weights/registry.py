"""The public InceptionV3 weight sets, kept as data, and `resolve()` for a `weights=` argument.

No Keras, torch or network here: resolving a name or a path only decides how the model must be
built (BatchNorm gamma, average-pool semantics) and how its input must be preprocessed. Reading
and checking the file happens in `anyshape.weights.loader` after the model is built.

Where the figures come from:
  - Keras: keras/src/applications/inception_v3.py (WEIGHTS_PATH, WEIGHTS_PATH_NO_TOP and their
    md5 file_hash; cached by keras.utils.get_file in `keras.config.keras_home()/models`).
  - torchvision: torchvision/models/inception.py, Inception_V3_Weights.IMAGENET1K_V1 (url,
    ImageClassification(crop_size=299, resize_size=342), bilinear, acc@1 77.294). The file name's
    suffix 0cc3c7bd is the first 8 hex digits of its sha256 (torch.hub's check_hash rule).
    torchvision builds this model with transform_input=True, which maps ImageNet mean/std
    normalised input back to x * 2 - 1 (the [-1, 1] scaling of the TF weights it was ported
    from): (p - m) / s * (s / 0.5) + (m - 0.5) / 0.5 == (p - 0.5) / 0.5 for every channel. Our
    model has no such layer; its metadata says mode "tf" instead, and preprocess_input with
    mode "tf" on the same pixels gives exactly what torchvision's first conv sees.
  - timm: timm/models/inception_v3.py default_cfgs (hf_hub_id timm/<name>, num_classes 1000 for
    all four (timm's ports already dropped TF-slim's background class), crop_pct 0.875,
    bicubic, IMAGENET_INCEPTION_MEAN/STD (0.5, 0.5, 0.5) = [-1, 1] except gluon_in1k which uses
    IMAGENET_DEFAULT_MEAN/STD; only tv_in1k carries AuxLogits weights (`has_aux_logits =
    pretrained_cfg.tag == 'tv_in1k'`). timm's layers are ConvNormAct modules named conv/bn, so
    its state-dict keys equal torchvision's.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

__all__ = [
    "WeightSet",
    "REGISTRY",
    "resolve",
    "weight_sets",
    "UnknownWeights",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # mean/std 0.5 is the same map as mode "tf": x / 127.5 - 1
INCEPTION_STD = (0.5, 0.5, 0.5)

KERAS_SUFFIXES = (".weights.h5", ".keras", ".h5", ".hdf5")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


class UnknownWeights(ValueError):
    """`weights=` names no registered weight set and no existing file."""


@dataclass(frozen=True)
class WeightSet:
    """One set of InceptionV3 weights: where it comes from, how to build and feed the model.

    Registry entries are data; `resolve()` returns them, or a WeightSet describing a local file.
    After loading, the model carries the WeightSet it was loaded from as `model.anyshape_weights`
    (with `path` set to the file actually read), so inference code can preprocess to match.
    """

    name: str
    source: str = "file"  # "keras", "torchvision", "timm" or "file"
    format: str = "keras"  # "keras" (h5 / .keras) or "torch" (state dict: .pth or .safetensors)
    description: str = ""
    # where the file comes from; registry sets have a URL and a cache file name
    url: str | None = None
    file_name: str | None = None
    file_hash: str | None = None  # hex digest, or a prefix of one (torch.hub style)
    hash_algorithm: str | None = None  # "md5" or "sha256"
    # Keras publishes a second file without the classifier
    url_notop: str | None = None
    file_name_notop: str | None = None
    file_hash_notop: str | None = None
    path: str | None = None  # a local file (set for paths, and after a registry set is fetched)
    # how the model must be built for exact outputs
    count_include_pad: bool = False  # True: 3x3 pool branches divide by 9 (torch semantics)
    bn_scale: bool = False  # True: BatchNorm has gamma (torchvision/timm)
    # preprocessing: mode "tf" is x / 127.5 - 1; mode "torch" is (x / 255 - mean) / std
    mode: str = "tf"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] = (299, 299)  # (H, W) it was evaluated at
    crop_pct: float = 0.875  # center crop fraction of the resized shorter side
    interpolation: str = "bilinear"
    # classifier
    num_classes: int | None = 1000  # None: not known until the file is read
    label_offset: int = 0  # 1: class 0 is a "background" class (TF-slim 1001-class heads)
    has_aux: bool = False  # carries AuxLogits weights
    top1: float | None = None  # published ImageNet-1k top-1 accuracy (%), where published
    license: str | None = None
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def preprocessing(self) -> dict:
        """Keyword arguments for `anyshape.preprocess_input`: mode, and mean/std for "torch"."""
        if self.mode == "torch":
            return {"mode": "torch", "mean": self.mean, "std": self.std}
        return {"mode": "tf"}

    def to_json(self) -> str:
        """The metadata as JSON (stored in converted files, so loading them restores it)."""
        d = asdict(self)
        d.pop("aliases")
        d.pop("path")
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, **changes) -> "WeightSet":
        d = json.loads(text)
        known = set(cls.__dataclass_fields__)
        d = {k: v for k, v in d.items() if k in known}
        for k in ("mean", "std", "input_size"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        d.update(changes)
        return cls(**d)


_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"


def _timm(tag: str, **kw) -> WeightSet:
    name = f"inception_v3.{tag}"
    return WeightSet(
        name=name,
        source="timm",
        format="torch",
        url=_HF.format(name),
        file_name=f"timm_{name}.safetensors",
        count_include_pad=True,
        bn_scale=True,
        crop_pct=0.875,
        interpolation="bicubic",
        license="apache-2.0",
        aliases=(f"timm/{name}", f"timm:{name}"),
        **kw,
    )


REGISTRY: dict[str, WeightSet] = {
    ws.name: ws
    for ws in (
        WeightSet(
            name="imagenet",
            source="keras",
            format="keras",
            description="Keras' InceptionV3 (keras.applications), ported from TF-slim",
            url=_KERAS_BASE + "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            file_name="inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            file_hash="9a0d58056eeedaa3f26cb7ebd46da564",
            hash_algorithm="md5",
            url_notop=_KERAS_BASE + "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            file_name_notop="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            file_hash_notop="bcbd6486424b2319ff4ef7d526e38f63",
            count_include_pad=False,
            bn_scale=False,
            mode="tf",
            interpolation="bilinear",
            top1=77.9,  # keras.io/api/applications table (Top-1 Accuracy 77.9 %)
            aliases=("keras", "keras.imagenet"),
        ),
        WeightSet(
            name="torchvision.IMAGENET1K_V1",
            source="torchvision",
            format="torch",
            description="torchvision Inception_V3_Weights.IMAGENET1K_V1, ported from TF",
            url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
            file_name="inception_v3_google-0cc3c7bd.pth",
            file_hash="0cc3c7bd",
            hash_algorithm="sha256",
            count_include_pad=True,
            bn_scale=True,
            # transform_input=True in torchvision == mode "tf" here (see the module docstring)
            mode="tf",
            crop_pct=299 / 342,
            interpolation="bilinear",
            has_aux=True,
            top1=77.294,
            license="bsd-3-clause",
            aliases=("IMAGENET1K_V1", "torchvision", "torchvision:IMAGENET1K_V1"),
        ),
        _timm(
            "tv_in1k",
            description="timm: torchvision's original port (inception_v3_google-1a9a5a14.pth)",
            mode="tf",
            has_aux=True,
        ),
        _timm("tf_in1k", description="timm: port of TF-slim inception_v3_2016_08_28", mode="tf"),
        _timm(
            "tf_adv_in1k",
            description="timm: port of TF adversarially trained adv_inception_v3_2017_08_18",
            mode="tf",
        ),
        _timm(
            "gluon_in1k",
            description="timm: port of GluonCV's InceptionV3",
            mode="torch",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        ),
    )
}

_ALIASES = {alias.lower(): ws.name for ws in REGISTRY.values() for alias in (ws.name, *ws.aliases)}


def weight_sets() -> list[WeightSet]:
    """The registered weight sets."""
    return list(REGISTRY.values())


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.lower().endswith(KERAS_SUFFIXES + TORCH_SUFFIXES)


def resolve(weights) -> WeightSet:
    """Turn a `weights=` argument into a `WeightSet`, without reading weights or the network.

    `weights` is a registered name (see `weight_sets()`; case-insensitive, aliases such as
    "IMAGENET1K_V1" or "timm/inception_v3.tf_in1k" work), a path to a Keras file (legacy .h5 as
    published, .weights.h5, .keras) or a PyTorch state dict (.pth, .pt, .bin, .safetensors), or
    a WeightSet (returned as is).

    Raises:
        UnknownWeights: (a ValueError) for anything else, listing the registered names.
    """
    if isinstance(weights, WeightSet):
        return weights
    if weights is None:
        raise UnknownWeights("weights=None means random initialisation: there is nothing to resolve")
    if not isinstance(weights, str) and hasattr(weights, "__fspath__"):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise UnknownWeights(f"weights must be None, a weight set name or a file path, got {weights!r}")
    key = _ALIASES.get(weights.lower())
    if key is not None:  # registered names win over a same-named file, as in keras.applications
        return REGISTRY[key]
    path = os.path.expanduser(weights)
    if os.path.isfile(path):
        return _describe_file(path)
    if os.path.isdir(path):
        raise UnknownWeights(f"weights={weights!r} is a directory; give the weights file inside it")
    names = ", ".join(sorted(REGISTRY))
    if _looks_like_path(weights):
        raise UnknownWeights(
            f"weights file {weights!r} does not exist (resolved to {os.path.abspath(path)!r}). "
            f"Give an existing file, a registered name ({names}), or None for random weights."
        )
    raise UnknownWeights(
        f"weights={weights!r} is neither a registered weight set nor an existing file. "
        f"Registered: {names} (aliases: IMAGENET1K_V1, timm/inception_v3.<tag>). "
        "Use weights=None for random initialisation."
    )


def _describe_file(path: str) -> WeightSet:
    lower = path.lower()
    name = os.path.basename(path)
    if lower.endswith(TORCH_SUFFIXES):
        # torchvision / timm state dict: BatchNorm with gamma, pools counting padding.
        return WeightSet(
            name=name, source="file", format="torch", path=path, count_include_pad=True,
            bn_scale=True, num_classes=None, has_aux=False, mode="tf",
            description="PyTorch state dict (torchvision/timm layout)",
        )
    if lower.endswith(KERAS_SUFFIXES):
        from anyshape.weights.keras_h5 import describe_keras_file

        return describe_keras_file(path)
    raise UnknownWeights(
        f"weights file {path!r}: unknown kind. Expected a Keras file ({', '.join(KERAS_SUFFIXES)}) "
        f"or a PyTorch state dict ({', '.join(TORCH_SUFFIXES)})."
    )
