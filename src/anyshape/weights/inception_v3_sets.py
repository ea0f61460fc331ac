"""InceptionV3's public weight sets, as data (the registry, `anyshape.weights.registry`, holds them
under their names and aliases).

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

from anyshape.data_config import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from anyshape.weights.torch_sets import HF_URL
from anyshape.weights.weight_set import WeightSet

__all__ = ["INCEPTION_V3_SETS"]

_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"


def _timm(tag: str, **kw) -> WeightSet:
    name = f"inception_v3.{tag}"
    return WeightSet(
        name=name,
        source="timm",
        format="torch",
        url=HF_URL.format(name),
        file_name=f"timm_{name}.safetensors",
        count_include_pad=True,
        bn_scale=True,
        crop_pct=DEFAULT_CROP_PCT,
        interpolation="bicubic",
        license="apache-2.0",
        aliases=(f"timm/{name}", f"timm:{name}"),
        **kw,
    )


INCEPTION_V3_SETS: tuple[WeightSet, ...] = (
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
        aliases=("keras", "keras.imagenet", "inception_v3.keras_in1k"),
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
