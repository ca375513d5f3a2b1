#include "harness/libvirt/image_upload.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include "base/file_util.h"
#include "base/log.h"
#include "base/scoped_fd.h"
#include "harness/libvirt/domain_xml.h"
#include "harness/libvirt/internal/virt_ptr.h"

namespace patchlab::harness {

using libvirt_internal::FailVirt;
using libvirt_internal::LastVirErrorCode;
using libvirt_internal::PoolPtr;
using libvirt_internal::StreamPtr;
using libvirt_internal::TakeString;
using libvirt_internal::VolPtr;

namespace {

Result<PoolPtr> OpenPool(LibvirtHost& host, const ImagePoolSpec& spec) {
  std::string where = fmt::format("libvirt {} pool {}", host.uri(), spec.name);
  PoolPtr pool(virStoragePoolLookupByName(host.conn(), spec.name.c_str()));
  if (!pool) {
    if (LastVirErrorCode() != VIR_ERR_NO_STORAGE_POOL)
      return FailVirt(ErrorCode::kInfra, where + ": looking it up");
    std::string xml =
        fmt::format("<pool type='dir'><name>{}</name><target><path>{}</path></target></pool>",
                    XmlEscape(spec.name), XmlEscape(spec.dir));
    pool.reset(virStoragePoolDefineXML(host.conn(), xml.c_str(), 0));
    if (!pool) return FailVirt(ErrorCode::kInfra, where + ": defining it in " + spec.dir);
    if (virStoragePoolBuild(pool.get(), 0) < 0)
      return FailVirt(ErrorCode::kInfra, where + ": building " + spec.dir);
    Log("libvirt")->info("{}: defined in {}", where, spec.dir);
  }
  if (virStoragePoolIsActive(pool.get()) != 1 && virStoragePoolCreate(pool.get(), 0) < 0) {
    return FailVirt(ErrorCode::kInfra, where + ": starting it");
  }
  return pool;
}

// Sends `fd`'s `size` bytes into the stream.
Status SendFile(virStreamPtr stream, int fd, uint64_t size, const std::string& where) {
  std::vector<char> buf(1 << 20);
  uint64_t left = size;
  while (left > 0) {
    ssize_t n = ::read(fd, buf.data(), std::min<uint64_t>(buf.size(), left));
    if (n < 0) return FailErrno(where + ": reading the local file");
    if (n == 0) return Fail(ErrorCode::kIo, "{}: the local file shrank while uploading", where);
    size_t off = 0;
    while (off < static_cast<size_t>(n)) {
      int sent = virStreamSend(stream, buf.data() + off, static_cast<size_t>(n) - off);
      if (sent < 0) return FailVirt(ErrorCode::kInfra, where + ": sending");
      off += static_cast<size_t>(sent);
    }
    left -= static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace

Status EnsureImagePool(LibvirtHost& host, const ImagePoolSpec& spec) {
  auto pool = OpenPool(host, spec);
  if (!pool) return std::unexpected(pool.error());
  return {};
}

Result<UploadedFile> UploadFile(LibvirtHost& host, const ImagePoolSpec& spec,
                                const std::filesystem::path& file, const std::string& volume) {
  std::string where = fmt::format("libvirt {} pool {} volume {}", host.uri(), spec.name, volume);
  ScopedFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + file.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return FailErrno("stat " + file.string());
  uint64_t size = static_cast<uint64_t>(st.st_size);

  auto pool = OpenPool(host, spec);
  if (!pool) return std::unexpected(pool.error());
  // Another lab process may have added volumes since the pool was started.
  (void)virStoragePoolRefresh(pool->get(), 0);

  UploadedFile out;
  out.bytes = size;
  VolPtr vol(virStorageVolLookupByName(pool->get(), volume.c_str()));
  if (vol) {
    virStorageVolInfo info{};
    if (virStorageVolGetInfo(vol.get(), &info) == 0 && info.capacity == size &&
        info.allocation >= size) {
      out.path = TakeString(virStorageVolGetPath(vol.get()));
      return out;
    }
    Log("libvirt")->warn("{}: present with the wrong size; replacing it", where);
    if (virStorageVolDelete(vol.get(), 0) < 0)
      return FailVirt(ErrorCode::kInfra, where + ": deleting a bad copy");
    vol.reset();
  }

  std::string xml = fmt::format(
      "<volume><name>{}</name><capacity unit='bytes'>{}</capacity><allocation "
      "unit='bytes'>{}</allocation>"
      "<target><format type='raw'/></target></volume>",
      XmlEscape(volume), size, size);
  vol.reset(virStorageVolCreateXML(pool->get(), xml.c_str(), 0));
  if (!vol) return FailVirt(ErrorCode::kInfra, where + ": creating");
  StreamPtr stream(virStreamNew(host.conn(), 0));
  Status sent = {};
  if (!stream) {
    sent = FailVirt(ErrorCode::kInfra, where + ": opening a stream");
  } else if (virStorageVolUpload(vol.get(), stream.get(), 0, size, 0) < 0) {
    sent = FailVirt(ErrorCode::kInfra, where + ": starting the upload");
  } else {
    sent = SendFile(stream.get(), fd.get(), size, where);
    if (sent && virStreamFinish(stream.get()) < 0)
      sent = FailVirt(ErrorCode::kInfra, where + ": finishing");
    if (!sent) virStreamAbort(stream.get());
  }
  if (sent) {
    virStorageVolInfo info{};
    if (virStorageVolGetInfo(vol.get(), &info) < 0) {
      sent = FailVirt(ErrorCode::kInfra, where + ": reading it back");
    } else if (info.capacity != size) {
      sent = Fail(ErrorCode::kInfra, "{}: {} bytes on the host after upload, {} sent", where,
                  info.capacity, size);
    }
  }
  if (!sent) {
    // Nothing half-done stays behind: a later run would trust a truncated file.
    virStorageVolDelete(vol.get(), 0);
    return std::unexpected(sent.error());
  }
  out.path = TakeString(virStorageVolGetPath(vol.get()));
  out.sent = true;
  return out;
}

Result<VmImage> UploadImage(LibvirtHost& host, const ImagePoolSpec& pool, const VmImage& image,
                            uint64_t* sent_bytes) {
  VmImage placed = image;
  uint64_t sent = 0;
  for (auto* path : {&placed.kernel, &placed.initrd}) {
    auto data = ReadFile(*path);
    if (!data) return std::unexpected(data.error());
    // Named by content: a changed file is a new volume, never a stale reuse.
    std::string volume = Sha256Hex(*data).substr(0, 24) + "-" + path->filename().string();
    auto up = UploadFile(host, pool, *path, volume);
    if (!up) return std::unexpected(up.error());
    if (up->sent) sent += up->bytes;
    *path = up->path;
  }
  if (sent_bytes != nullptr) *sent_bytes = sent;
  return placed;
}

}  // namespace patchlab::harness
