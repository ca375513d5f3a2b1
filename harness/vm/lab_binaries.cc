// LocateLabBinaries (image_store.h): the agent and hotpatch an image carries.
#include <cstdlib>
#include <string>

#include "harness/vm/image_store.h"

namespace patchlab::harness {
namespace fs = std::filesystem;

LabBinaries LocateLabBinaries() {
  LabBinaries out;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  // Walk up from the running program: in a build tree the agent sits in
  // BUILD/harness and hotpatch in BUILD/tools/hotpatch.
  for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    if (out.agent.empty() && fs::is_regular_file(dir / "harness/patchlab-agent"))
      out.agent = dir / "harness/patchlab-agent";
    if (out.agent.empty() && fs::is_regular_file(dir / "patchlab-agent"))
      out.agent = dir / "patchlab-agent";
    if (out.hotpatch.empty() && fs::is_regular_file(dir / "tools/hotpatch/hotpatch"))
      out.hotpatch = dir / "tools/hotpatch/hotpatch";
    if (out.hotpatch.empty() && fs::is_regular_file(dir / "hotpatch"))
      out.hotpatch = dir / "hotpatch";
  }
  const char* path_env = std::getenv("PATH");
  std::string path = path_env ? path_env : "/usr/bin:/bin";
  for (size_t start = 0; start <= path.size();) {
    size_t colon = path.find(':', start);
    fs::path dir =
        path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (out.agent.empty() && fs::is_regular_file(dir / "patchlab-agent"))
      out.agent = dir / "patchlab-agent";
    if (out.hotpatch.empty() && fs::is_regular_file(dir / "hotpatch"))
      out.hotpatch = dir / "hotpatch";
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

}  // namespace patchlab::harness
