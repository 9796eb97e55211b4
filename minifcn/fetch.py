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
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from tqdm import tqdm

MIRROR_VARIABLE = "MINIFCN_DOWNLOAD_MIRROR"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One downloadable file: where from, its checksum (see ``verify``), how big, whether to unpack it."""

    name: str
    url: str
    checksum: str | None  # None: the distributor publishes none (the full length the server announces is checked)
    size: int | None = None  # bytes, where the distributor says
    unpack: bool = True
    lands: str = ""  # what the loaders read, below the root (for the message)


# Checksums as their distributors publish them: VOC's and SBD's MD5s as torchvision's loaders list them; a
# torchvision weight file's name carries the first hex digits of its SHA-256 (what torch.hub checks); BVLC's
# model zoo readme gives GoogLeNet's SHA-1. VGG's Caffe weights, the reference's list and its trained nets
# come with no published checksum: for them the length the server announces is checked, and a line says so.
CATALOGUE = {
    e.name: e
    for e in (
        Entry(
            "voc2012",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            "md5:6cd6e144f989b92b3379bac3b3de84fd",
            lands="VOCdevkit/VOC2012 (--dataset voc --data-root ROOT/VOCdevkit)",
        ),
        Entry(
            "voc2011",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2011/VOCtrainval_25-May-2011.tar",
            "md5:6c3384ef61512963050cb5d687e5bf1e",
            lands="TrainVal/VOCdevkit/VOC2011 (--voc-root ROOT/TrainVal/VOCdevkit/VOC2011, for seg11valid)",
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
            None,
            unpack=False,
            lands="downloads/VGG_ILSVRC_16_layers.caffemodel (--init: the paper's start)",
        ),
        Entry(
            "seg11valid",
            "https://raw.githubusercontent.com/shelhamer/fcn.berkeleyvision.org/master/data/pascal/seg11valid.txt",
            None,
            unpack=False,
            lands="downloads/seg11valid.txt (the reference's list; --val-split seg11valid derives the same 736)",
        ),
        *(
            Entry(
                name,
                f"http://dl.caffe.berkeleyvision.org/{name}.caffemodel",
                None,
                unpack=False,
                lands=f"downloads/{name}.caffemodel (evaluate --weights ... --model {name.split('-')[0]})",
            )
            for name in ("fcn32s-heavy-pascal", "fcn16s-heavy-pascal", "fcn8s-heavy-pascal", "fcn8s-atonce-pascal")
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


def verify(path: str, checksum: str | None) -> None:
    """DownloadError (and the file removed) unless ``path`` has ``checksum``: 'md5:<hex>', 'sha1:<hex>',
    'sha256:<hex>', or 'sha256-prefix:<hex>' (the first digits, as a torchvision file name carries them)."""
    if checksum is None:
        return
    kind, expected = checksum.split(":", 1)
    algorithm = kind.removesuffix("-prefix")
    got = digest_of(path, algorithm)
    if not (got.startswith(expected) if kind.endswith("-prefix") else got == expected):
        os.remove(path)
        raise DownloadError(
            f"{path!r} does not match its checksum: expected {kind} {expected}, got {got}; it was deleted"
        )


def fetch(url: str, path: str, checksum: str | None, size: int | None = None, progress: bool = True) -> None:
    """Download ``url`` to ``path`` (resuming ``path.part``), verified against ``checksum``; atomic rename."""
    part = path + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            announced = response.headers.get("Content-Length")
            total = have + int(announced) if announced else size
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
    expected = size or total
    if expected and os.path.getsize(part) != expected:
        raise DownloadError(f"{url}: got {os.path.getsize(part)} bytes of {expected}; run again to resume")
    verify(part, checksum)
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
    """Fetch (or verify) catalogue entry ``name`` below ``root``, unpack it once; returns the file's path."""
    if name not in CATALOGUE:
        raise DownloadError(f"unknown download {name!r}; the catalogue has {', '.join(CATALOGUE)}")
    entry = CATALOGUE[name]
    folder = os.path.join(root, "downloads")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(urllib.parse.urlsplit(entry.url).path))
    done = path + ".unpacked"
    if os.path.exists(path):
        verify(path, entry.checksum)  # a file placed by hand, or an earlier run's
    else:
        fetch(mirrored(entry.url, mirror), path, entry.checksum, entry.size, progress)
    if entry.unpack and not os.path.exists(done):
        safe_extract(path, root)
        open(done, "w").close()
    return path
