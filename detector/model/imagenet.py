"""torchvision's published ImageNet ResNet files by name, fetched once into torch's cache.

    path = pretrained_path("imagenet", "resnet18")
    # -> $TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth, downloaded from
    #    https://download.pytorch.org/models/resnet18-f37072fd.pth on first use
    load_resnet_weights(backbone, path)

The cache is torchvision's own (`torch.hub.get_dir()/checkpoints`, the same file
names), so a file that torchvision already downloaded is reused, and a file placed
there by hand makes every later run work offline. The part of each file name after
the dash is the start of the file's SHA-256: it is checked after a download and
before every use of a cached file. A download goes to a temp file in the same folder
and is renamed into place only once complete and verified; on any failure the temp
file is removed, so an interrupted or damaged transfer never leaves a file that a
later run would trust.

This is the package's only code that downloads weights. The base URL can point at a
mirror through the environment variable `DETECTOR_WEIGHTS_URL` (the folder holding
the same file names), e.g. `DETECTOR_WEIGHTS_URL=http://mirror.lan/torchvision/`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
import uuid
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

import torch.hub
from tqdm import tqdm

from detector.config import PRETRAINED_NAMES
from detector.model.pretrained import PretrainedWeightsError

DEFAULT_BASE_URL = "https://download.pytorch.org/models/"
BASE_URL_ENV = "DETECTOR_WEIGHTS_URL"  # a mirror of DEFAULT_BASE_URL's files
# (backbone, model.pretrained name) -> torchvision's file name (torchvision/models/resnet.py:
# ResNet*_Weights.IMAGENET1K_V1 / IMAGENET1K_V2). The part after the dash starts its SHA-256.
IMAGENET_FILES: dict[tuple[str, str], str] = {
    ("resnet18", "imagenet"): "resnet18-f37072fd.pth",
    ("resnet34", "imagenet"): "resnet34-b627a593.pth",
    ("resnet50", "imagenet"): "resnet50-0676ba61.pth",
    ("resnet50", "imagenet-v2"): "resnet50-11ad3fa6.pth",
    ("resnet101", "imagenet"): "resnet101-63fe2227.pth",
    ("resnet101", "imagenet-v2"): "resnet101-cd907fc2.pth",
}
TIMEOUT_SECONDS = 60.0  # per connect and per read: a stalled transfer fails instead of hanging
_CHUNK = 1 << 20


class WeightDownloadError(PretrainedWeightsError):
    """A named weight file that could not be downloaded, or whose content fails its hash."""


def imagenet_file_name(name: str, backbone: str) -> str:
    """torchvision's file name for `model.pretrained: name` at `model.backbone: backbone`."""
    try:
        return IMAGENET_FILES[(backbone, name)]
    except KeyError:
        raise PretrainedWeightsError(
            f"model.pretrained: {name!r}: torchvision publishes no such file for {backbone}"
        ) from None


def weights_url(file_name: str) -> str:
    """Where `file_name` is downloaded from: `DETECTOR_WEIGHTS_URL` if set, else torchvision's."""
    base = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return base.rstrip("/") + "/" + file_name


def cache_path(file_name: str) -> Path:
    """The path torchvision caches `file_name` at: `torch.hub.get_dir()/checkpoints/file_name`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def hash_prefix(file_name: str) -> str:
    """The SHA-256 prefix a torchvision file name carries: `resnet18-f37072fd.pth` -> `f37072fd`."""
    stem = file_name.split(".")[0]
    prefix = stem.rpartition("-")[2]
    if "-" not in stem or not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise ValueError(f"{file_name}: no SHA-256 prefix after a dash in the file name")
    return prefix


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _download_failed(name: str, url: str, dest: Path, reason: str) -> WeightDownloadError:
    return WeightDownloadError(
        f"model.pretrained: {name}: cannot download {url} ({_one_line(reason)}); to work offline "
        f"place that file at {dest}, or set model.pretrained to a local path"
    )


def _reason(exc: BaseException) -> str:
    """A short cause for a failed transfer: the HTTP status, the socket error, or the exception."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _transfer(url: str, handle: BinaryIO, expected: str, progress: bool) -> str | None:
    """Stream `url` into `handle`; None when complete and hashed right, else what went wrong."""
    digest = hashlib.sha256()
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": "detector"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
            desc=url.rpartition("/")[2],
            file=sys.stderr,
            leave=False,
        ) as bar:
            while block := response.read(_CHUNK):
                handle.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        return f"the transfer ended after {received} of {total} bytes"
    actual = digest.hexdigest()
    if not actual.startswith(expected):
        return (
            f"the downloaded file's SHA-256 starts {actual[: len(expected)]}, its name says "
            f"{expected}"
        )
    return None


def download_weights(name: str, url: str, dest: Path, *, progress: bool = True) -> None:
    """Download `url` to `dest` through a temp file in the same folder, checking its hash.

    Args:
        name: the `model.pretrained` value, for the error message.
        url: the file's URL.
        dest: the cache path; its file name carries the expected SHA-256 prefix.
        progress: show a progress bar on stderr.

    Raises:
        WeightDownloadError: one line naming the URL, `dest` and `model.pretrained`, for a
            failed connection, an HTTP error, a short transfer or a wrong hash. Nothing is
            left at `dest` nor any temp file beside it.
    """
    expected = hash_prefix(dest.name)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _download_failed(name, url, dest, f"cannot create {dest.parent}: {exc}") from None
    temp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.partial")
    try:
        with temp.open("xb") as handle:
            problem = _transfer(url, handle, expected, progress)
        if problem is None:
            os.replace(temp, dest)
    except (OSError, HTTPException, ValueError) as exc:  # URLError and timeouts are OSErrors
        problem = _reason(exc)
    finally:
        temp.unlink(missing_ok=True)
    if problem is not None:
        raise _download_failed(name, url, dest, problem)


def fetch_imagenet_weights(name: str, backbone: str, *, progress: bool = True) -> Path:
    """The cached torchvision file for `name` at `backbone`, downloaded first if absent.

    A cached file (ours or torchvision's) is used without any request once its SHA-256
    matches the prefix in its name.

    Raises:
        WeightDownloadError: the download failed (see `download_weights`).
        PretrainedWeightsError: a cached file whose content does not match its name
            (damaged, or another file placed under that name): it is left alone and named.
    """
    file_name = imagenet_file_name(name, backbone)
    url, dest = weights_url(file_name), cache_path(file_name)
    if not dest.is_file():
        print(f"model.pretrained: {name}: downloading {url} to {dest}", file=sys.stderr)
        download_weights(name, url, dest, progress=progress)  # verifies the hash itself
        return dest
    expected = hash_prefix(file_name)
    actual = _file_sha256(dest)
    if not actual.startswith(expected):
        raise PretrainedWeightsError(
            f"model.pretrained: {name}: {dest} has SHA-256 {actual[: len(expected)]}..., its name "
            f"says {expected}... (a damaged file or another file under this name); delete it to "
            f"download {url} again, or set model.pretrained to a local path"
        )
    return dest


def pretrained_path(pretrained: str, backbone: str, *, progress: bool = True) -> Path:
    """The local file that `model.pretrained` designates: a fetched name, or the path itself."""
    if pretrained in PRETRAINED_NAMES:
        return fetch_imagenet_weights(pretrained, backbone, progress=progress)
    return Path(pretrained)
