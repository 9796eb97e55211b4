"""Fetching datasets and weights, checked: the catalogue and the fetching (``python -m minifcn.download``,
and ``--download`` on train and evaluate, use it).

Each catalogue entry names its URL, its size when known, and the checksum its
distributor publishes; the file lands in ``<root>/downloads/`` and an archive
is unpacked into ``<root>/`` so that the loaders' ``--data-root`` takes the
result as it lands (``voc2012`` gives ``<root>/VOCdevkit/VOC2012``). On the way:

- a partial download (``<file>.part``) resumes where it stopped, with an HTTP
  Range request, after a Ctrl-C or a dropped connection;
- the checksum is verified before anything is unpacked; a mismatch keeps
  nothing and names the file, the expected and the received digest;
- extraction refuses entries (and links) that would land outside the root;
- a second run verifies what is there and does nothing else;
- ``--mirror URL`` (or ``MINIFCN_DOWNLOAD_MIRROR``) replaces the scheme and
  host of every URL, for a mirror or a proxy cache;
- without a network, one line names the URL and where to place the file by
  hand for the next run to pick up.

The catalogue: the PASCAL datasets (voc2012, voc2011, sbd, seg11valid), the
ImageNet weights (vgg16-caffe, vgg16-torchvision, alexnet-torchvision,
bvlc-googlenet) and the reference's trained FCNs (fcn32s-heavy-pascal,
fcn16s-heavy-pascal, fcn8s-heavy-pascal, fcn8s-atonce-pascal).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from tqdm import tqdm

MIRROR_VARIABLE = "MINIFCN_DOWNLOAD_MIRROR"
CHUNK = 1 << 20


MB = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One downloadable file: where from, how it is checked (see ``verify`` and ``inspect``), where it lands."""

    name: str
    url: str
    checksum: str | None  # None: no checksum is published; then ``inspect`` checks what the file is
    size: int | None = None  # bytes, where the distributor says
    unpack: bool = True
    lands: str = ""  # what the loaders read, below the root (for the message)
    mirrors: tuple[str, ...] = ()  # further sources of the same bytes, tried in order after ``url``
    checksum_by: str = ""  # who publishes the checksum, where it is not the distributor
    # Without a checksum, what the file must be (``inspect``): an error page fails at once.
    sizes: tuple[int, int] | None = None  # the plausible size range in bytes
    holds: tuple[str, ...] = ()  # layers a .caffemodel must hold, or files an archive must hold
    ids: int | None = None  # a list of VOC image ids: how many
    model: str | None = None  # a trained net: the --model that reads it

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)


# Checksums as their distributors publish them: VOC's and SBD's MD5s as torchvision's loaders list them; a
# torchvision weight file's name carries the first hex digits of its SHA-256 (what torch.hub checks); BVLC's
# model zoo readme gives GoogLeNet's SHA-1. VGG's Caffe weights and two of the reference's trained nets have
# no checksum from their distributors, but OpenCV's model downloader (opencv_extra,
# testdata/dnn/download_models.py) lists SHA-1s for them: those are used, and named as OpenCV's. The rest
# (the reference's list, two trained nets) are checked by what they are: a plausible size, and the ids or
# the layers they must hold.
VGG_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1", "conv5_3", "fc6", "fc7")
FCN_LAYERS = {
    "fcn32s": VGG_LAYERS + ("score_fr", "upscore"),
    "fcn16s": VGG_LAYERS + ("score_fr", "upscore2", "score_pool4", "upscore16"),
    "fcn8s": VGG_LAYERS + ("score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore8"),
}
FCN_LAYERS["fcn8s-atonce"] = FCN_LAYERS["fcn8s"] + ("scale_pool4", "scale_pool3")
OPENCV = "OpenCV's model downloader"
VOC_HOSTS = ("https://thor.robots.ox.ac.uk", "http://host.robots.ox.ac.uk")  # the new host first, same paths


def _trained(name: str, model: str, sha1: str | None) -> Entry:
    """One of the reference's trained FCNs (Sec. 4, PASCAL VOC), from BVLC's server."""
    return Entry(
        name,
        f"http://dl.caffe.berkeleyvision.org/{name}.caffemodel",
        f"sha1:{sha1}" if sha1 else None,
        unpack=False,
        lands=f"downloads/{name}.caffemodel (evaluate --weights ... --model {model})",
        checksum_by=OPENCV if sha1 else "",
        sizes=(400 * MB, 700 * MB),
        holds=FCN_LAYERS[model],
        model=model,
    )


CATALOGUE = {
    e.name: e
    for e in (
        Entry(
            "voc2012",
            f"{VOC_HOSTS[0]}/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            "md5:6cd6e144f989b92b3379bac3b3de84fd",
            lands="VOCdevkit/VOC2012 (--dataset voc --data-root ROOT/VOCdevkit)",
            mirrors=(f"{VOC_HOSTS[1]}/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",),
        ),
        Entry(
            "voc2011",
            f"{VOC_HOSTS[0]}/pascal/VOC/voc2011/VOCtrainval_25-May-2011.tar",
            "md5:6c3384ef61512963050cb5d687e5bf1e",
            lands="TrainVal/VOCdevkit/VOC2011 (--voc-root ROOT/TrainVal/VOCdevkit/VOC2011, for seg11valid)",
            mirrors=(f"{VOC_HOSTS[1]}/pascal/VOC/voc2011/VOCtrainval_25-May-2011.tar",),
        ),
        Entry(
            "sbd",
            "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
            "md5:82b4d87ceb2ed10f6038a1cba92111cb",
            lands="benchmark_RELEASE/dataset (--dataset sbd --data-root ROOT/benchmark_RELEASE)",
        ),
        Entry(
            "vgg16-torchvision",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "sha256-prefix:397923af",
            unpack=False,
            lands="downloads/vgg16-397923af.pth (--init)",
        ),
        Entry(
            "alexnet-torchvision",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "sha256-prefix:7be5be79",
            unpack=False,
            lands="downloads/alexnet-owt-7be5be79.pth (--init, with --backbone alexnet)",
        ),
        Entry(
            "vgg16-caffe",
            "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel",
            "sha1:9363e1f6d65f7dba68c4f27a1e62105cdf6c4e24",
            unpack=False,
            lands="downloads/VGG_ILSVRC_16_layers.caffemodel (--init: the paper's start)",
            checksum_by=OPENCV,
        ),
        Entry(
            "seg11valid",
            "https://raw.githubusercontent.com/shelhamer/fcn.berkeleyvision.org/master/data/pascal/seg11valid.txt",
            None,
            unpack=False,
            lands="downloads/seg11valid.txt (the reference's list; --val-split seg11valid derives the same 736)",
            sizes=(736 * 12, 736 * 13),
            ids=736,
        ),
        _trained("fcn32s-heavy-pascal", "fcn32s", "05eb922d7829c39448f57e5ab9d8cd75d6c0be6d"),
        _trained("fcn16s-heavy-pascal", "fcn16s", None),
        _trained("fcn8s-heavy-pascal", "fcn8s", "c449ea74dd7d83751d1357d6a8c323fcf4038962"),
        _trained("fcn8s-atonce-pascal", "fcn8s-atonce", None),
        Entry(
            "bvlc-googlenet",
            "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
            "sha1:405fc5acd08a3bb12de8ee5e23a96bec22f08204",
            unpack=False,
            lands="downloads/bvlc_googlenet.caffemodel (--init, with --backbone googlenet)",
        ),
    )
}


class DownloadError(ValueError):
    """A download that cannot go on (shown as one line)."""


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror``'s (which may add a path prefix)."""
    if not mirror:
        return url
    parts, base = urllib.parse.urlsplit(url), urllib.parse.urlsplit(mirror)
    return urllib.parse.urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))


def digest_of(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def what_arrived(path: str) -> str:
    """'1234 bytes', and where the file starts like a web page, that it looks like HTML (an error page)."""
    with open(path, "rb") as f:
        start = f.read(512).lstrip().lower()
    html = start.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")) or b"<html" in start
    return f"{os.path.getsize(path)} bytes" + (", which look like an HTML page (an error page?)" if html else "")


def verify(path: str, checksum: str | None, checksum_by: str = "") -> None:
    """DownloadError (and the file removed) unless ``path`` has ``checksum``: 'md5:<hex>', 'sha1:<hex>',
    'sha256:<hex>', or 'sha256-prefix:<hex>' (the first digits, as a torchvision file name carries them)."""
    if checksum is None:
        return
    kind, expected = checksum.split(":", 1)
    algorithm = kind.removesuffix("-prefix")
    got = digest_of(path, algorithm)
    if not (got.startswith(expected) if kind.endswith("-prefix") else got == expected):
        arrived = what_arrived(path)
        os.remove(path)
        by = f" ({checksum_by}'s)" if checksum_by else ""
        raise DownloadError(
            f"{path!r} does not match its checksum: expected {kind}{by} {expected}, got {got}; what arrived: "
            f"{arrived}; it was deleted"
        )


def inspect(entry: Entry, path: str) -> None:
    """For a file with no checksum: DownloadError (and the file removed) unless it is what ``entry`` says.

    Its size must be plausible, a list of ids must hold that many VOC ids, a
    .caffemodel must parse and hold its net's layers, an archive the files
    its loader reads. An error page fails here, and the message says what came.
    """
    if entry.checksum is not None:
        return
    size, problem = os.path.getsize(path), None
    if entry.sizes and not entry.sizes[0] <= size <= entry.sizes[1]:
        problem = f"{entry.name} is {entry.sizes[0]} to {entry.sizes[1]} bytes"
    elif entry.ids is not None:
        with open(path, "rb") as f:
            lines = f.read().decode("ascii", "replace").split()
        bad = [line for line in lines if not re.fullmatch(r"\d{4}_\d{6}", line)]
        if len(lines) != entry.ids or bad:
            problem = f"{entry.name} is {entry.ids} VOC image ids, one per line (got {len(lines)}, {len(bad)} not ids)"
    elif entry.url.endswith(".caffemodel") and entry.holds:
        from .weights import read_caffemodel  # only here: parsing is what checks a file that has no checksum

        try:
            layers = {name.rsplit(".", 1)[0] for name in read_caffemodel(path)}
            missing = [layer for layer in entry.holds if layer not in layers]
            if missing:
                problem = f"{entry.name} must hold the layers {', '.join(missing)}, which it lacks"
        except ValueError:
            problem = f"{entry.name} must be a .caffemodel (a binary NetParameter), and this one does not parse"
    elif entry.unpack and entry.holds:
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
        missing = [member for member in entry.holds if member not in names]
        if missing:
            problem = f"{entry.name} must hold {', '.join(missing)}, which it lacks"
    if problem:
        arrived = what_arrived(path)
        os.remove(path)
        raise DownloadError(f"{path!r}: {problem}; what arrived: {arrived}; it was deleted")


def fetch(url: str, path: str, entry: Entry, progress: bool = True) -> None:
    """Download ``url`` to ``path`` (resuming ``path.part``), checked as ``entry`` says; atomic rename."""
    part = path + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            announced = response.headers.get("Content-Length")
            total = have + int(announced) if announced else entry.size
            with (
                open(part, "ab" if have else "wb") as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=os.path.basename(path),
                    disable=not progress,
                    file=sys.stderr,
                ) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # HTTPException: a cut mid-body
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot download {url} ({reason}); run again to resume, or place the file by hand at {path!r}"
        ) from None
    expected = entry.size or total
    if expected and os.path.getsize(part) != expected:
        raise DownloadError(f"{url}: got {os.path.getsize(part)} bytes of {expected}; run again to resume")
    verify(part, entry.checksum, entry.checksum_by)
    inspect(entry, part)
    os.replace(part, path)


def safe_extract(archive: str, root: str) -> None:
    """Unpack a tar archive into ``root``, refusing any entry or link that would land outside it."""
    top = os.path.realpath(root)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            target = os.path.realpath(os.path.join(top, m.name))
            link = m.issym() or m.islnk()
            lands = os.path.realpath(os.path.join(os.path.dirname(target), m.linkname)) if link else target
            if os.path.commonpath([top, target]) != top or os.path.commonpath([top, lands]) != top:
                raise DownloadError(f"{archive!r}: entry {m.name!r} would land outside {root!r}; nothing unpacked")
            if not (m.isfile() or m.isdir() or link):
                raise DownloadError(f"{archive!r}: entry {m.name!r} is not a file, folder or link; nothing unpacked")
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python's own check too, where it has one
        tar.extractall(top, members, **safe)


def download(name: str, root: str, mirror: str | None = None, progress: bool = True) -> str:
    """Fetch (or verify) catalogue entry ``name`` below ``root``, unpack it once; returns the file's path.

    The entry's sources are tried in order (``--mirror`` replaces them all);
    one line names each source that fails, and the one that served the file.
    """
    if name not in CATALOGUE:
        raise DownloadError(f"unknown download {name!r}; the catalogue has {', '.join(CATALOGUE)}")
    if os.path.exists(root) and not os.path.isdir(root):
        raise DownloadError(f"--root {root!r} is a file, not a folder: the downloads land in a folder")
    entry = CATALOGUE[name]
    folder = os.path.join(root, "downloads")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(urllib.parse.urlsplit(entry.url).path))
    done = path + ".unpacked"
    if os.path.exists(path):
        verify(path, entry.checksum, entry.checksum_by)  # a file placed by hand, or an earlier run's
        inspect(entry, path)
    else:
        sources = list(dict.fromkeys(mirrored(url, mirror) for url in entry.urls))
        for i, url in enumerate(sources):
            try:
                fetch(url, path, entry, progress)
                break
            except DownloadError as e:
                if i == len(sources) - 1:
                    raise
                print(f"minifcn: {name}: {e}; trying {sources[i + 1]}", file=sys.stderr, flush=True)
        print(f"minifcn: {name}: from {url}", flush=True)
    if entry.unpack and not os.path.exists(done):
        safe_extract(path, root)
        open(done, "w").close()
    return path
