// Image upload: puts a reference image's kernel and initramfs into a libvirt
// storage pool on a (remote) host, so its daemon can boot them.
//
// The pool is a directory pool (default "patchlab" in
// /var/lib/libvirt/images/patchlab), defined, built and started when absent.
// Each file becomes a raw volume named by its content ("SHA256PREFIX-vmlinuz"),
// uploaded through a virStream; a volume of that name and size already there is
// reused without sending anything. An upload that fails part-way deletes its
// volume, so a later run never takes a truncated file for a good one.
//
// Errors: kInfra naming the host URI, pool and volume.
//
// Thread-safety: safe for distinct hosts; uploads of the same image to one host
// from several threads are serialized by the caller (LibvirtBackend does).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "harness/libvirt/libvirt_host.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

struct ImagePoolSpec {
  std::string name = "patchlab";
  std::string dir = "/var/lib/libvirt/images/patchlab";  // on the host
};

struct UploadedFile {
  std::string path;  // the volume's path on the host
  uint64_t bytes = 0;
  bool sent = false;  // false: an identical volume was already there
};

// Makes sure the pool exists and runs on `host`.
Status EnsureImagePool(LibvirtHost& host, const ImagePoolSpec& pool);

// Uploads `file` as volume `volume` unless present with the same size.
Result<UploadedFile> UploadFile(LibvirtHost& host, const ImagePoolSpec& pool,
                                const std::filesystem::path& file, const std::string& volume);

// Uploads `image`'s kernel and initrd (named by content) and returns the image
// with both paths replaced by the volumes' paths on the host.
// `sent_bytes` (may be null) gets how many bytes went over the wire.
Result<VmImage> UploadImage(LibvirtHost& host, const ImagePoolSpec& pool, const VmImage& image,
                            uint64_t* sent_bytes = nullptr);

}  // namespace patchlab::harness
