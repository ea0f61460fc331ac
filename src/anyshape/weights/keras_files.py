"""keras.applications' ImageNet weight files for the family, as data: names, URLs and hashes.

Every figure here is copied from Keras' source (keras-team/keras, keras/src/applications/, read at
commit 3422977a5e38fb2f7709aaa9a08e47f0c43d0f60); each table names its file. `keras.utils.get_file`
caches a file under its *file name* (the first argument, not always the URL's last part: NASNet's
"nasnet_mobile.h5" comes from ".../NASNet-mobile.h5") in `keras.config.keras_home()/models`, and
so does anyshape, so a file Keras has downloaded is found here and the other way round.

Hashes are md5 except ConvNeXt's (sha256, 64 hex digits); Keras publishes none for MobileNet and
MobileNetV2 (get_file is called without file_hash), so those files are only checked by loading.

Pure data and string rules: no Keras, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KerasFile", "KERAS_FILES", "keras_file", "mobilenet_rows"]

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class KerasFile:
    """One published file: the URL, the name keras.utils.get_file caches it under, its hash."""

    url: str
    file_name: str
    file_hash: str | None
    algorithm: str | None


def _file(base: str, name: str, file_hash: str | None, url_name: str | None = None) -> KerasFile:
    algorithm = None if file_hash is None else ("sha256" if len(file_hash) == 64 else "md5")
    return KerasFile(base + (url_name or name), name, file_hash, algorithm)


def _tf_kernels(base: str, stem: str, top: str, notop: str) -> tuple[KerasFile, KerasFile]:
    """`<stem>_weights_tf_dim_ordering_tf_kernels[_notop].h5`, Keras' usual naming."""
    return (
        _file(base, f"{stem}_weights_tf_dim_ordering_tf_kernels.h5", top),
        _file(base, f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5", notop),
    )


# keras/src/applications/resnet.py: BASE_WEIGHTS_PATH, WEIGHTS_HASHES (resnet_v2.py uses the same
# table and file names, weights_name "resnet50v2" ...)
_RESNET = _GCS + "resnet/"
_RESNET_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}
# keras/src/applications/densenet.py: BASE_WEIGHTS_PATH, DENSENET*_WEIGHT_PATH[_NO_TOP], file_hash
_DENSENET = _GCS + "densenet/"
_DENSENET_HASHES = {
    "densenet121": ("9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
    "densenet169": ("d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
    "densenet201": ("1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1"),
}
# keras/src/applications/efficientnet.py: BASE_WEIGHTS_PATH (no "tensorflow/" in it),
# WEIGHTS_HASHES; file_name = name + ".h5" / "_notop.h5" with Keras' default name "efficientnetb0"
_EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"
_EFFICIENTNET_HASHES = {
    "b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}
# keras/src/applications/efficientnet_v2.py: BASE_WEIGHTS_PATH, WEIGHTS_HASHES; file_name = name +
# ".h5" / "_notop.h5" with Keras' default name "efficientnetv2-b0", ..., "efficientnetv2-s"
_EFFICIENTNET_V2 = _GCS + "efficientnet_v2/"
_EFFICIENTNET_V2_HASHES = {
    "b0": ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff"),
    "b1": ("069f0534ff22adf035c89e2d9547a9dc", "0e80663031ca32d657f9caa404b6ec37"),
    "b2": ("424e49f28180edbde1e94797771950a7", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "b3": ("1f1fc43bd98a6e4fd8fdfd551e02c7a0", "f6abf7b5849ac99a89b50dd3fd532856"),
    "s": ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070"),
    "m": ("a3bf6aa3276309f4fc6a34aa114c95cd", "1b8dc055df72dde80d614482840fe342"),
    "l": ("27e6d408b53c7ebc868fefa357689935", "b0b66b5c863aef5b46e8608fe1711615"),
}
# keras/src/applications/convnext.py: BASE_WEIGHTS_PATH, WEIGHTS_HASHES (sha256); file_name = name
# + ".h5" / "_notop.h5" with Keras' default name "convnext_tiny", ...
_CONVNEXT = _GCS + "convnext/"
_CONVNEXT_HASHES = {
    "tiny": (
        "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
    ),
    "small": (
        "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
        "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
    ),
    "base": (
        "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
        "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45",
    ),
    "large": (
        "070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6",
        "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd",
    ),
    "xlarge": (
        "c1f5ccab661354fc3a79a10fa99af82f0fbf10ec65cb894a3ae0815f17a889ee",
        "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05",
    ),
}
# keras/src/applications/mobilenet_v3.py: BASE_WEIGHT_PATH, WEIGHTS_HASHES keyed by
# "{model_type}{_minimalistic}_224_{alpha}_float"; files weights_mobilenet_v3_<key>.h5 and
# weights_mobilenet_v3_<key>_no_top_v2.h5
_MOBILENET_V3 = _GCS + "mobilenet_v3/"
MOBILENET_V3_HASHES = {
    "large_224_0.75_float": ("765b44a33ad4005b3ac83185abf1d0eb", "40af19a13ebea4e2ee0c676887f69a2e"),
    "large_224_1.0_float": ("59e551e166be033d707958cf9e29a6a7", "07fb09a5933dd0c8eaafa16978110389"),
    "large_minimalistic_224_1.0_float": ("675e7b876c45c57e9e63e6d90a36599c", "ec5221f64a2f6d1ef965a614bdae7973"),
    "small_224_0.75_float": ("cb65d4e5be93758266aa0a7f2c6708b7", "ebdb5cc8e0b497cd13a7c275d475c819"),
    "small_224_1.0_float": ("8768d4c2e7dee89b9d02b2d03d65d862", "d3e8ec802a04aa4fc771ee12a9a9b836"),
    "small_minimalistic_224_1.0_float": ("99cd97fb2fcdad2bf028eb838de69e37", "cde8136e733e811080d9fcd8a252f7e4"),
}
# keras/src/applications/mobilenet.py and mobilenet_v2.py: BASE_WEIGHT_PATH; names built from alpha
# and rows (see `keras_file`); no hashes published
_MOBILENET = _GCS + "mobilenet/"
_MOBILENET_V2 = _GCS + "mobilenet_v2/"
MOBILENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)  # mobilenet.py: "alpha can be one of 0.25, 0.50, 0.75 or 1.0"
MOBILENET_ROWS = (128, 160, 192, 224)
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_V2_ROWS = (96, 128, 160, 192, 224)

KERAS_FILES: dict[str, tuple[KerasFile, KerasFile]] = {
    # (with the top, without) for each network whose files do not depend on its Config
    **{
        name: _tf_kernels(_RESNET, key, *_RESNET_HASHES[key])
        for name, key in (
            ("resnet50", "resnet50"),
            ("resnet101", "resnet101"),
            ("resnet152", "resnet152"),
            ("resnet50_v2", "resnet50v2"),
            ("resnet101_v2", "resnet101v2"),
            ("resnet152_v2", "resnet152v2"),
        )
    },
    # keras/src/applications/vgg16.py and vgg19.py: WEIGHTS_PATH[_NO_TOP] and their file_hash
    "vgg16": _tf_kernels(
        _GCS + "vgg16/", "vgg16", "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"
    ),
    "vgg19": _tf_kernels(
        _GCS + "vgg19/", "vgg19", "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"
    ),
    **{name: _tf_kernels(_DENSENET, name, *hashes) for name, hashes in _DENSENET_HASHES.items()},
    **{
        f"efficientnet_{k}": (
            _file(_EFFICIENTNET, f"efficientnet{k}.h5", top),
            _file(_EFFICIENTNET, f"efficientnet{k}_notop.h5", notop),
        )
        for k, (top, notop) in _EFFICIENTNET_HASHES.items()
    },
    **{
        f"efficientnet_v2_{k}": (
            _file(_EFFICIENTNET_V2, f"efficientnetv2-{k}.h5", top),
            _file(_EFFICIENTNET_V2, f"efficientnetv2-{k}_notop.h5", notop),
        )
        for k, (top, notop) in _EFFICIENTNET_V2_HASHES.items()
    },
    **{
        f"convnext_{k}": (
            _file(_CONVNEXT, f"convnext_{k}.h5", top),
            _file(_CONVNEXT, f"convnext_{k}_notop.h5", notop),
        )
        for k, (top, notop) in _CONVNEXT_HASHES.items()
    },
    # keras/src/applications/xception.py: WEIGHTS_PATH[_NO_TOP] and their file_hash
    "xception": _tf_kernels(
        _GCS + "xception/", "xception", "0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97"
    ),
    # keras/src/applications/inception_resnet_v2.py: BASE_WEIGHT_URL, fname and file_hash
    "inception_resnet_v2": _tf_kernels(
        _GCS + "inception_resnet_v2/",
        "inception_resnet_v2",
        "e693bd0210a403b3192acc6073ad2e96",
        "d19885ff4a710c122648d3b5c3b684e4",
    ),
    # keras/src/applications/nasnet.py: NASNET_*_WEIGHT_PATH[_NO_TOP]; get_file caches them as
    # nasnet_mobile.h5 etc. (not the URL's NASNet-mobile.h5)
    "nasnet_mobile": (
        _file(_GCS + "nasnet/", "nasnet_mobile.h5", "020fb642bf7360b370c678b08e0adf61", "NASNet-mobile.h5"),
        _file(
            _GCS + "nasnet/", "nasnet_mobile_no_top.h5", "1ed92395b5b598bdda52abe5c0dbfd63", "NASNet-mobile-no-top.h5"
        ),
    ),
    "nasnet_large": (
        _file(_GCS + "nasnet/", "nasnet_large.h5", "11577c9a518f0070763c2b964a382f17", "NASNet-large.h5"),
        _file(_GCS + "nasnet/", "nasnet_large_no_top.h5", "d81d89dc07e6e56530c4e77faddd61b5", "NASNet-large-no-top.h5"),
    ),
}


class NoKerasFile(ValueError):
    """keras.applications publishes no ImageNet file for this configuration."""


def mobilenet_rows(config, allowed: tuple[int, ...]) -> int:
    """The `rows` Keras' MobileNet / MobileNetV2 pick their file by: the input size when it is square
    and one Keras publishes, else 224 (keras/src/applications/mobilenet.py: "Weights for input shape
    (224, 224) will be loaded as the default")."""
    shape = getattr(config, "input_shape", None)
    if shape is None:
        return 224
    h, w = (shape[1], shape[2]) if getattr(config, "data_format", "channels_last") == "channels_first" else shape[:2]
    return h if h == w and h in allowed else 224


def keras_file(arch_name: str, config=None, include_top: bool = True) -> KerasFile:
    """The file keras.applications would load for `arch_name` built with `config` (default Config
    values when None), with or without the top, named exactly as Keras names it.

    Raises:
        NoKerasFile: (a ValueError) where Keras publishes none (e.g. MobileNet alpha=0.3), in the
            constructor's argument names.
    """
    if arch_name in KERAS_FILES:
        return KERAS_FILES[arch_name][0 if include_top else 1]
    alpha = float(getattr(config, "alpha", 1.0))
    if arch_name == "mobilenet":
        # mobilenet.py: depth_multiplier must be 1; alpha_text "1_0", "7_5", "5_0", else "2_5"
        if alpha not in MOBILENET_ALPHAS or getattr(config, "depth_multiplier", 1) != 1:
            raise NoKerasFile(
                f"keras.applications publishes MobileNet ImageNet weights for alpha in {MOBILENET_ALPHAS} with "
                f"depth_multiplier=1 only (got alpha={alpha}, depth_multiplier={getattr(config, 'depth_multiplier', 1)})"
            )
        text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0"}.get(alpha, "2_5")
        rows = mobilenet_rows(config, MOBILENET_ROWS)
        name = f"mobilenet_{text}_{rows}_tf.h5" if include_top else f"mobilenet_{text}_{rows}_tf_no_top.h5"
        return _file(_MOBILENET, name, None)
    if arch_name == "mobilenet_v2":
        if alpha not in MOBILENET_V2_ALPHAS:
            raise NoKerasFile(
                f"keras.applications publishes MobileNetV2 ImageNet weights for alpha in {MOBILENET_V2_ALPHAS} "
                f"only (got alpha={alpha})"
            )
        rows = mobilenet_rows(config, MOBILENET_V2_ROWS)
        stem = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}"
        return _file(_MOBILENET_V2, f"{stem}.h5" if include_top else f"{stem}_no_top.h5", None)
    if arch_name in ("mobilenet_v3_large", "mobilenet_v3_small"):
        model_type = arch_name.rsplit("_", 1)[1]
        minimalistic = bool(getattr(config, "minimalistic", False))
        key = f"{model_type}{'_minimalistic' if minimalistic else ''}_224_{alpha}_float"
        if key not in MOBILENET_V3_HASHES:
            raise NoKerasFile(
                f"keras.applications publishes no MobileNetV3{model_type.capitalize()} ImageNet weights for "
                f"alpha={alpha}, minimalistic={minimalistic}: alpha 0.75 or 1.0, and minimalistic only with 1.0"
            )
        top, notop = MOBILENET_V3_HASHES[key]
        if include_top:
            return _file(_MOBILENET_V3, f"weights_mobilenet_v3_{key}.h5", top)
        return _file(_MOBILENET_V3, f"weights_mobilenet_v3_{key}_no_top_v2.h5", notop)
    raise NoKerasFile(f"keras.applications publishes no ImageNet weights for {arch_name!r}")
