// What the lab reads from QEMU's monitor socket (harness/vm/internal/
// qmp_client.h): bytes split into lines as the reader thread splits them,
// each classified, each reply decoded as Execute and QueryStatus decode it.
#include "fuzz/fuzz_target.h"
#include "harness/vm/internal/qmp_client.h"
#include "harness/vm/internal/unix_socket.h"

PATCHLAB_FUZZ_TARGET(qmp) {
  using namespace patchlab::harness::internal;
  std::string_view bytes = patchlab::fuzz::AsText(data, size);
  LineSplitter splitter(1 << 20);
  bool overlong = false;
  // Two reads' worth, so that a line split across reads is joined as on the socket.
  auto lines = splitter.Feed(bytes.substr(0, bytes.size() / 2), &overlong);
  auto rest = splitter.Feed(bytes.substr(bytes.size() / 2), &overlong);
  lines.insert(lines.end(), rest.begin(), rest.end());
  for (const std::string& line : lines) {
    auto msg = ParseQmpLine(line);
    if (!msg || msg->kind != QmpMessage::Kind::kReply) continue;
    auto value = QmpReplyValue("fuzz-command", msg->reply);
    if (!value) FUZZ_CHECK(value.error().ToString().find("fuzz-command") != std::string::npos);
  }
  return 0;
}
