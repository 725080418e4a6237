#!/usr/bin/env python3
"""Writes a reproducible OCI image archive (an OCI image layout in a tar) from a root filesystem.

    oci.py ROOTFS OUT.tar --name podid/mic:v0.1.0 --entrypoint /usr/local/bin/mic [--user 65532:65532]

One gzip layer holding ROOTFS (entries sorted, owner 0:0, mtime SOURCE_DATE_EPOCH or 0), the
config and the manifest as canonical JSON, and an index that names the image for containerd
(`io.containerd.image.name`) and for OCI tools (`org.opencontainers.image.ref.name`). The same
inputs give the same bytes.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def layer_tar(rootfs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            names = sorted(dirnames + filenames)
            for name in names:
                path = os.path.join(dirpath, name)
                arcname = os.path.relpath(path, rootfs)
                info = tar.gettarinfo(path, arcname)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = EPOCH
                info.pax_headers = {}
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rootfs")
    p.add_argument("out")
    p.add_argument("--name", required=True, help="repository:tag, e.g. podid/mic:v0.1.0")
    p.add_argument("--entrypoint", required=True, action="append")
    p.add_argument("--user", default="")
    p.add_argument("--env", action="append", default=[])
    a = p.parse_args()

    layer = layer_tar(a.rootfs)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(layer)
    layer_gz = gz.getvalue()

    created = "1970-01-01T00:00:00Z"
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": a.entrypoint,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env,
            "User": a.user,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        "history": [{"created": created, "created_by": "scripts/build-images"}],
    }
    config_bytes = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest(layer_gz),
                "size": len(layer_gz),
            }
        ],
    }
    manifest_bytes = canonical(manifest)
    repository, tag = a.name.rsplit(":", 1)
    full = a.name if "/" in repository and "." in repository.split("/")[0] else "docker.io/" + a.name
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": full,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    entries = [
        ("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})),
        ("index.json", canonical(index)),
    ]
    blobs = sorted({digest(b): b for b in (config_bytes, manifest_bytes, layer_gz)}.items())
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = EPOCH
            tar.addfile(info)
        for name, data in entries + [("blobs/sha256/" + d.split(":", 1)[1], b) for d, b in blobs]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(json.dumps({"image": full, "manifest": digest(manifest_bytes), "layer_bytes": len(layer_gz),
                      "rootfs_bytes": len(layer)}))


if __name__ == "__main__":
    main()
