"""`model.pretrained: imagenet`: torchvision's file fetched into torch's cache, hash checked.

A loopback HTTP server serves a generated resnet18 state dict in torchvision's key
layout under a name carrying its own SHA-256 prefix; `DETECTOR_WEIGHTS_URL` points the
download at it and `TORCH_HOME` at an empty cache per test.

    .venv/bin/python -m pytest tests/model/test_imagenet.py -q
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from detector.config import IMAGENET_WEIGHTS, ModelConfig, load_config
from detector.model import imagenet
from detector.model.backbone import ResNetBackbone
from detector.model.build import build_model
from detector.model.imagenet import (
    IMAGENET_FILES,
    WeightDownloadError,
    cache_path,
    fetch_imagenet_weights,
    hash_prefix,
    pretrained_path,
    weights_url,
)
from detector.model.pretrained import PretrainedWeightsError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class WeightServer:
    """Serves `files` (name -> bytes) under /models/ on loopback and records each request.

    `truncate[name] = n` announces the full Content-Length but sends only n bytes, then
    closes the connection (a transfer cut short), or with `stall` set keeps it open
    without sending more until the server stops (a transfer that hangs).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.stall = False
        self.stopping = threading.Event()
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.requests.append(self.path)
                name = self.path.removeprefix("/models/")
                body = owner.files.get(name)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: owner.truncate.get(name, len(body))])
                self.wfile.flush()
                if owner.stall:
                    owner.stopping.wait(timeout=30)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WeightServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def named_by_hash(stem: str, body: bytes) -> str:
    """torchvision's naming: `<stem>-<first 8 hex digits of the SHA-256>.pth`."""
    return f"{stem}-{hashlib.sha256(body).hexdigest()[:8]}.pth"


@pytest.fixture(scope="module")
def resnet18_file() -> tuple[bytes, dict[str, torch.Tensor]]:
    """A width-1.0 resnet18 state dict in torchvision's layout (with its `fc` classifier)."""
    torch.manual_seed(3)
    state = ResNetBackbone(depth=18).state_dict()
    state = {
        key: value + 0.5 if value.is_floating_point() else value for key, value in state.items()
    }
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch cache for this test: `$TORCH_HOME/hub/checkpoints`."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WeightServer]:
    with WeightServer() as running:
        monkeypatch.setenv("DETECTOR_WEIGHTS_URL", running.url)
        yield running


def publish(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make `model.pretrained: imagenet` at resnet18 mean file `name`."""
    monkeypatch.setitem(IMAGENET_FILES, ("resnet18", "imagenet"), name)


def serve(server: WeightServer, monkeypatch: pytest.MonkeyPatch, body: bytes) -> str:
    """Serve `body` under its hash-carrying name as resnet18's `imagenet` file; the name."""
    name = named_by_hash("resnet18", body)
    server.files[name] = body
    publish(monkeypatch, name)
    return name


def offline_url() -> tuple[socket.socket, str]:
    """A loopback URL whose port is bound but not listening: connections are refused."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    return blocker, f"http://127.0.0.1:{blocker.getsockname()[1]}/models/"


def assert_one_line_naming(message: str, url: str, path: Path) -> None:
    assert "\n" not in message, message
    assert message.startswith("model.pretrained: imagenet: cannot download "), message
    assert url in message and str(path) in message, message
    assert "set model.pretrained to a local path" in message


def test_table_has_torchvisions_file_for_every_name_the_config_accepts() -> None:
    accepted = {(backbone, name) for backbone, names in IMAGENET_WEIGHTS.items() for name in names}
    assert set(IMAGENET_FILES) == accepted
    # torchvision/models/resnet.py: ResNet{18,34,50,101}_Weights.IMAGENET1K_V1 and _V2.
    assert IMAGENET_FILES[("resnet18", "imagenet")] == "resnet18-f37072fd.pth"
    assert IMAGENET_FILES[("resnet34", "imagenet")] == "resnet34-b627a593.pth"
    assert IMAGENET_FILES[("resnet50", "imagenet")] == "resnet50-0676ba61.pth"
    assert IMAGENET_FILES[("resnet50", "imagenet-v2")] == "resnet50-11ad3fa6.pth"
    assert IMAGENET_FILES[("resnet101", "imagenet")] == "resnet101-63fe2227.pth"
    assert IMAGENET_FILES[("resnet101", "imagenet-v2")] == "resnet101-cd907fc2.pth"
    assert hash_prefix("resnet50-11ad3fa6.pth") == "11ad3fa6"
    for bad in ("resnet50.pth", "resnet50-.pth", "resnet50-XYZ.pth"):
        with pytest.raises(ValueError, match="no SHA-256 prefix"):
            hash_prefix(bad)


def test_url_and_cache_path_are_torchvisions(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DETECTOR_WEIGHTS_URL")
    assert weights_url("resnet18-f37072fd.pth") == (
        "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    )
    monkeypatch.setenv("DETECTOR_WEIGHTS_URL", "http://mirror.lan/tv")
    assert weights_url("resnet18-f37072fd.pth") == "http://mirror.lan/tv/resnet18-f37072fd.pth"
    assert cache_path("resnet18-f37072fd.pth") == cache / "resnet18-f37072fd.pth"
    assert cache_path("x.pth") == Path(torch.hub.get_dir()) / "checkpoints" / "x.pth"


def test_download_loads_strictly_then_cached_file_needs_no_request(
    cache: Path, server: WeightServer, resnet18_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, state = resnet18_file
    name = serve(server, monkeypatch, body)

    model = build_model(ModelConfig(backbone="resnet18", pretrained="imagenet", image_size=64), 3)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert server.requests == [f"/models/{name}"]
    assert sorted(p.name for p in cache.iterdir()) == [name]  # no temp file left
    assert (cache / name).read_bytes() == body

    again = build_model(ModelConfig(backbone="resnet18", pretrained="imagenet", image_size=64), 3)
    assert torch.equal(again.backbone.conv1.weight, state["conv1.weight"])
    assert server.requests == [f"/models/{name}"]  # the second build asked for nothing


def test_file_torchvision_already_downloaded_is_used_offline(
    cache: Path, resnet18_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, state = resnet18_file
    name = named_by_hash("resnet18", body)
    cache.mkdir(parents=True)
    (cache / name).write_bytes(body)  # where torchvision.models.resnet18(weights=...) keeps it
    publish(monkeypatch, name)
    blocker, url = offline_url()
    with blocker:
        monkeypatch.setenv("DETECTOR_WEIGHTS_URL", url)
        assert pretrained_path("imagenet", "resnet18") == cache / name
        model = build_model(ModelConfig(pretrained="imagenet", image_size=64), 3)
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_hash_mismatch_leaves_nothing_in_the_cache(
    cache: Path, server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"not the weights the name promises" * 100
    name = named_by_hash("resnet18", b"other content")
    server.files[name] = body
    publish(monkeypatch, name)
    with pytest.raises(WeightDownloadError) as info:
        fetch_imagenet_weights("imagenet", "resnet18", progress=False)
    message = str(info.value)
    assert_one_line_naming(message, server.url + name, cache / name)
    actual = hashlib.sha256(body).hexdigest()[:8]
    assert f"SHA-256 starts {actual}, its name says {hash_prefix(name)}" in message
    assert list(cache.iterdir()) == []


def test_truncated_transfer_leaves_nothing_and_a_retry_succeeds(
    cache: Path, server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: several read chunks
    name = serve(server, monkeypatch, body)
    server.truncate[name] = len(body) // 2
    with pytest.raises(WeightDownloadError) as info:
        fetch_imagenet_weights("imagenet", "resnet18", progress=False)
    assert_one_line_naming(str(info.value), server.url + name, cache / name)
    assert f"(the transfer ended after {len(body) // 2} of {len(body)} bytes)" in str(info.value)
    assert list(cache.iterdir()) == []

    del server.truncate[name]  # the network recovers: the next run downloads it whole
    assert fetch_imagenet_weights("imagenet", "resnet18", progress=False) == cache / name
    assert (cache / name).read_bytes() == body
    assert len(server.requests) == 2


def test_stalled_transfer_times_out_and_leaves_nothing(
    cache: Path, server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"y" * 4096
    name = serve(server, monkeypatch, body)
    server.truncate[name], server.stall = 1000, True
    monkeypatch.setattr(imagenet, "TIMEOUT_SECONDS", 0.5)
    with pytest.raises(WeightDownloadError) as info:
        fetch_imagenet_weights("imagenet", "resnet18", progress=False)
    assert_one_line_naming(str(info.value), server.url + name, cache / name)
    assert "(TimeoutError: timed out)" in str(info.value)
    assert list(cache.iterdir()) == []


def test_offline_is_one_line_naming_url_cache_path_and_key(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker, url = offline_url()
    with blocker:
        monkeypatch.setenv("DETECTOR_WEIGHTS_URL", url)
        with pytest.raises(WeightDownloadError) as info:
            build_model(ModelConfig(backbone="resnet18", pretrained="imagenet", image_size=64), 3)
    message = str(info.value)
    assert message == (
        f"model.pretrained: imagenet: cannot download {url}resnet18-f37072fd.pth "
        "([Errno 111] Connection refused); to work offline place that file at "
        f"{cache / 'resnet18-f37072fd.pth'}, or set model.pretrained to a local path"
    )
    assert not cache.exists() or list(cache.iterdir()) == []


def test_http_error_is_named(cache: Path, server: WeightServer) -> None:
    with pytest.raises(WeightDownloadError, match=r"\(HTTP 404 Not Found\); to work offline"):
        fetch_imagenet_weights("imagenet", "resnet50", progress=False)
    assert server.requests == ["/models/resnet50-0676ba61.pth"]
    assert list(cache.iterdir()) == []


def test_interrupted_download_leaves_no_temp_file(
    cache: Path, server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"x" * 1000
    serve(server, monkeypatch, body)

    def write_then_interrupt(url, handle, expected, progress):
        handle.write(body[:300])
        raise KeyboardInterrupt

    monkeypatch.setattr(imagenet, "_transfer", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch_imagenet_weights("imagenet", "resnet18", progress=False)
    assert list(cache.iterdir()) == []


def test_damaged_cached_file_is_refused_without_a_request(
    cache: Path, server: WeightServer, resnet18_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, _ = resnet18_file
    name = serve(server, monkeypatch, body)
    cache.mkdir(parents=True)
    (cache / name).write_bytes(body[:-10])  # a cut copy placed by hand
    with pytest.raises(PretrainedWeightsError) as info:
        fetch_imagenet_weights("imagenet", "resnet18", progress=False)
    message = str(info.value)
    assert "\n" not in message and str(cache / name) in message and "delete it" in message
    assert server.requests == []
    assert (cache / name).stat().st_size == len(body) - 10  # the user's file is left alone


def test_local_path_never_downloads(tmp_path: Path, resnet18_file) -> None:
    body, state = resnet18_file
    path = tmp_path / "imagenet-v2"  # a file that happens to be named like a weight name
    path.write_bytes(body)
    assert pretrained_path(str(path), "resnet18") == path
    model = build_model(ModelConfig(backbone="resnet18", pretrained=str(path), image_size=64), 3)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_shipped_configs_ask_for_imagenet_and_tests_stay_offline(
    name: str, offline_weights: str
) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert (cfg.model.pretrained, cfg.model.backbone) == ("imagenet", "resnet50")
    # The suite's guard (tests/conftest.py) turns any such build into an immediate error.
    with pytest.raises(WeightDownloadError, match="Connection refused") as info:
        pretrained_path(cfg.model.pretrained, cfg.model.backbone, progress=False)
    assert f"{offline_weights}resnet50-0676ba61.pth" in str(info.value)


def test_only_imagenet_module_fetches_weights_and_readme_lists_every_file() -> None:
    package = Path(imagenet.__file__).resolve().parents[1]
    fetchers = (
        "torch.hub.load",
        "load_state_dict_from_url",
        "download_url_to_file",
        "download.pytorch.org",
    )
    users = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(word in path.read_text(encoding="utf-8") for word in fetchers)
    )
    assert users == ["model/imagenet.py"]
    # urlopen only for the weights and for MJPEG stream sources the user names.
    openers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "urlopen(" in path.read_text(encoding="utf-8")
    )
    assert openers == ["inference/mjpeg.py", "model/imagenet.py"]
    readme = (package.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in IMAGENET_FILES.values())
