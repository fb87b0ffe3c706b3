#!/usr/bin/env python3
"""Assembles the operator's OCI image archive from a static binary, without a container daemon.

Everything that could vary between two builds of the same binary is pinned, so the digest depends
only on the inputs: tar entries are sorted, owned by 0:0 with mtime 0 and fixed modes; gzip has no
file name and no timestamp; JSON is written with sorted keys; `created` is SOURCE_DATE_EPOCH
(default 0). The output is an OCI image layout (oci-layout, index.json, blobs/sha256/...) packed
into one tar, the format `skopeo copy oci-archive:`, `podman load` and `kind load image-archive`
read.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

# Fixed so an archive never depends on the builder's umask or the checkout's file modes.
DIR_MODE = 0o755
FILE_MODE = 0o644
EXEC_MODE = 0o755
UID = 65532


def tar_bytes(entries):
    """entries: (name, mode, bytes or None for a directory), written in sorted order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, mode, data in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    # filename="" and mtime=0: no name and no timestamp in the gzip header.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def created_time():
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    ts = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def ca_bundle(directory):
    """Mozilla's root certificates as Debian ships them, concatenated in name order.

    Only the package's own files, never /etc/ssl/certs: that one also holds whatever the build
    machine's administrator trusted locally, which must not leak into the image (and would make
    two machines build two digests)."""
    names = sorted(n for n in os.listdir(directory) if n.endswith(".crt"))
    if not names:
        raise SystemExit(f"oci.py: no certificates in {directory}")
    return b"".join(read(os.path.join(directory, n)).rstrip(b"\n") + b"\n" for n in names)


def layer(args):
    """The root file system: the binary, a passwd/group naming 65532, the CA bundle (HTTPS to S3
    for backups), and nothing else (no shell)."""
    return tar_bytes(
        [
            ("etc", DIR_MODE, None),
            ("etc/passwd", FILE_MODE, read(args.passwd)),
            ("etc/group", FILE_MODE, read(args.group)),
            ("etc/ssl", DIR_MODE, None),
            ("etc/ssl/certs", DIR_MODE, None),
            ("etc/ssl/certs/ca-certificates.crt", FILE_MODE, ca_bundle(args.ca_dir)),
            ("redis-operator", EXEC_MODE, read(args.binary)),
        ]
    )


def config(args, diff_id):
    created = created_time()
    return {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{UID}",
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": ["/redis-operator"],
            "Cmd": ["run"],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "redis-operator",
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "hack/image/oci.py"}],
    }


def descriptor(media_type, data, annotations=None):
    d = {"mediaType": media_type, "digest": digest(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def normalized(ref):
    """redis-operator:latest -> docker.io/library/redis-operator:latest (containerd's image name)."""
    first, _, rest = ref.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        ref = "docker.io/" + (ref if rest else "library/" + ref)
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        ref += ":latest"
    return ref


def build(args):
    raw_layer = layer(args)
    gz_layer = gzip_bytes(raw_layer)
    cfg = canonical_json(config(args, digest(raw_layer)))
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", cfg),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", gz_layer)],
        }
    )
    # ref.name is what node-agent matches Pod images against; io.containerd.image.name is what
    # `kind load image-archive` (containerd's importer) names the image after.
    annotations = {
        "org.opencontainers.image.ref.name": args.ref,
        "io.containerd.image.name": normalized(args.ref),
    }
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                dict(
                    descriptor("application/vnd.oci.image.manifest.v1+json", manifest, annotations),
                    platform={"architecture": "amd64", "os": "linux"},
                )
            ],
        }
    )
    entries = [
        ("blobs", DIR_MODE, None),
        ("blobs/sha256", DIR_MODE, None),
        ("oci-layout", FILE_MODE, canonical_json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", FILE_MODE, index),
    ]
    for blob in (gz_layer, cfg, manifest):
        entries.append(("blobs/sha256/" + digest(blob)[len("sha256:"):], FILE_MODE, blob))
    archive = tar_bytes(entries)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.out)
    return digest(manifest), len(archive)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--passwd", required=True)
    p.add_argument("--group", required=True)
    p.add_argument(
        "--ca-dir",
        default="/usr/share/ca-certificates/mozilla",
        help="directory of .crt files for etc/ssl/certs/ca-certificates.crt",
    )
    p.add_argument("--ref", required=True, help="image reference, e.g. redis-operator:latest")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    image_digest, size = build(args)
    print(f"{args.out} {args.ref} {image_digest} {size} bytes")


if __name__ == "__main__":
    sys.exit(main())
