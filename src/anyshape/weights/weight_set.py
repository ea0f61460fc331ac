"""`WeightSet`: one set of weights as data (where it comes from, how to build and feed the model).

Its own module so that the file readers (`keras_h5`) and the registry, which peeks into files
with them, both import it without importing each other. `anyshape.weights.registry` holds the
registered sets and `resolve`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from anyshape.data_config import DEFAULT_CROP_MODE, DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION, DataConfig

__all__ = ["WeightSet"]


@dataclass(frozen=True)
class WeightSet:
    """One set of InceptionV3 weights: where it comes from, how to build and feed the model.

    Registry entries are data; `resolve()` returns them, or a WeightSet describing a local file.
    After loading, the model carries the WeightSet it was loaded from as `model.anyshape_weights`
    (with `path` set to the file actually read), so inference code can preprocess to match.
    """

    name: str
    # the registered network these weights were made for (`anyshape.list_models()`); None for a
    # Keras file that does not say (it is then checked against the model when it is loaded)
    arch: str | None = "inception_v3"
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
    crop_pct: float = DEFAULT_CROP_PCT  # center crop fraction of the resized shorter side
    interpolation: str = DEFAULT_INTERPOLATION
    crop_mode: str = DEFAULT_CROP_MODE  # timm's: "center" keeps the aspect ratio, "squash" does not
    # classifier
    num_classes: int | None = 1000  # None: not known until the file is read
    label_offset: int = 0  # 1: class 0 is a "background" class (TF-slim 1001-class heads)
    has_aux: bool = False  # carries AuxLogits weights
    top1: float | None = None  # published ImageNet-1k top-1 accuracy (%), where published
    license: str | None = None
    aliases: tuple[str, ...] = field(default=(), compare=False)
    # build arguments of `arch`'s Config these weights need beyond InceptionV3's two fields above
    # (e.g. EfficientNet's stddev_rescaling: Keras' weights="imagenet" model has that layer)
    overrides: tuple[tuple[str, object], ...] = ()
    # False for a file that does not say how its input is scaled (mode is then an assumption or
    # the caller's `preprocessing=`); not stored by to_json: a converted file declares it.
    declared: bool = field(default=True, compare=False)

    @property
    def build_overrides(self) -> dict:
        """The build arguments that make the network the same function as the one these weights
        were trained in (`anyshape.create_model` fills the ones the caller left None), for the
        network they were made for (`arch`; InceptionV3 for a file that does not say)."""
        return self.build_overrides_for(self.arch or "inception_v3")

    def build_overrides_for(self, arch: str) -> dict:
        """The build overrides for building network `arch` with these weights: none reach a
        network the set was not made for (bn_scale and count_include_pad are InceptionV3's)."""
        if self.arch is not None and self.arch != arch:
            return {}
        out = dict(self.overrides)
        if arch == "inception_v3":
            out.update(count_include_pad=self.count_include_pad, bn_scale=self.bn_scale)
        return out

    @property
    def data_config(self) -> DataConfig:
        """How images must be prepared for these weights (`anyshape.data_config.resolve_data_config`
        reads it from a WeightSet, or from the one a model carries as `anyshape_weights`)."""
        size = tuple(self.input_size) if self.input_size is not None else None
        if size is not None:  # (C, H, W) or (H, W, C) from an older file's metadata: keep (H, W)
            size = size[-2:] if len(size) == 3 and size[0] in (1, 3, 4) else size[:2]
        return DataConfig(
            mode=self.mode or "tf",
            mean=tuple(self.mean) if isinstance(self.mean, (list, tuple)) else self.mean,
            std=tuple(self.std) if isinstance(self.std, (list, tuple)) else self.std,
            input_size=size,
            crop_pct=float(self.crop_pct or DEFAULT_CROP_PCT),
            interpolation=self.interpolation or DEFAULT_INTERPOLATION,
            label_offset=self.label_offset if self.label_offset is not None else "auto",
            crop_mode=self.crop_mode or DEFAULT_CROP_MODE,
        )

    @property
    def preprocessing(self) -> dict:
        """Keyword arguments for `anyshape.preprocess_input`: mode, and mean/std for "torch"."""
        return self.data_config.preprocess_kwargs()

    def to_json(self) -> str:
        """The metadata as JSON (stored in converted files, so loading them restores it)."""
        d = asdict(self)
        d.pop("aliases")
        d.pop("path")
        d.pop("declared")
        d["overrides"] = [list(kv) for kv in self.overrides]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, **changes) -> WeightSet:
        d = json.loads(text)
        known = set(cls.__dataclass_fields__)
        d = {k: v for k, v in d.items() if k in known}
        for k in ("mean", "std", "input_size"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        if "overrides" in d:
            d["overrides"] = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in d["overrides"])
        d.update(changes)
        return cls(**d)
