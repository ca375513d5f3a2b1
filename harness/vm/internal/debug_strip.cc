#include "harness/vm/internal/debug_strip.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "base/subprocess.h"

namespace patchlab::harness::internal {
namespace fs = std::filesystem;

namespace {

bool HasDebugSections(const ElfFile& elf) {
  for (const ElfSection& s : elf.sections()) {
    if (s.name.starts_with(".debug_") || s.name.starts_with(".zdebug_")) return true;
  }
  return false;
}

// A temporary file that is removed when it goes out of scope.
class ScopedTempFile {
 public:
  static Result<ScopedTempFile> Create() {
    std::string tmpl = (fs::temp_directory_path() / "patchlab-strip-XXXXXX").string();
    int fd = ::mkstemp(tmpl.data());
    if (fd < 0) return Fail(ErrorCode::kIo, "mkstemp {}: {}", tmpl, std::strerror(errno));
    ::close(fd);
    return ScopedTempFile(tmpl);
  }
  ScopedTempFile(ScopedTempFile&& other) noexcept : path_(std::move(other.path_)) {
    other.path_.clear();
  }
  ScopedTempFile(const ScopedTempFile&) = delete;
  ScopedTempFile& operator=(const ScopedTempFile&) = delete;
  ScopedTempFile& operator=(ScopedTempFile&&) = delete;
  ~ScopedTempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const fs::path& path() const { return path_; }

 private:
  explicit ScopedTempFile(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

}  // namespace

Result<std::string> ReadWithoutDebugInfo(const fs::path& host) {
  auto bytes = ReadFile(host);
  if (!bytes) return std::unexpected(bytes.error());
  if (!bytes->starts_with("\x7f"
                          "ELF"))
    return bytes;
  auto elf = ElfFile::FromBytes(*bytes, host);
  if (!elf) return std::unexpected(elf.error());
  if (!HasDebugSections(*elf)) return bytes;

  auto out = ScopedTempFile::Create();
  if (!out) return std::unexpected(out.error());
  SubprocessOptions o;
  o.argv = {"objcopy", "--strip-debug", host.string(), out->path().string()};
  o.env_set = {{"LC_ALL", "C"}};
  o.timeout = std::chrono::seconds(120);
  auto r = RunSubprocess(std::move(o));
  if (!r) return std::unexpected(std::move(r.error()).AddContext("stripping " + host.string()));
  if (!r->status.Success()) {
    return Fail(ErrorCode::kIo, "objcopy --strip-debug {}: {}", host.string(),
                r->stderr_data.substr(0, r->stderr_data.find('\n')));
  }
  return ReadFile(out->path());
}

}  // namespace patchlab::harness::internal
