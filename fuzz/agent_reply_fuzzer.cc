// What the lab reads from the guest agent (harness/vm/internal/
// agent_replies.h): bytes split into lines as AgentClient's reader thread
// splits them, each line classified, and each reply or exit event decoded by
// every decoder the client uses (which one applies depends on the request,
// and a hostile guest may answer any request with any line). `hotpatch
// --json` output is read from a run reply's stdout as Hotpatch() reads it.
#include "fuzz/fuzz_target.h"
#include "harness/vm/internal/agent_replies.h"
#include "harness/vm/internal/unix_socket.h"

namespace {

using namespace patchlab::harness::internal;

template <typename T>
void CheckDecoded(const patchlab::Result<T>& decoded) {
  if (!decoded) FUZZ_CHECK(decoded.error().code() == patchlab::ErrorCode::kInfra);
}

void DecodeEvery(const nlohmann::json& body) {
  CheckDecoded(DecodeHello(body));
  CheckDecoded(DecodePid(body));
  CheckDecoded(DecodeExit(body));
  auto run = DecodeRun(body);
  CheckDecoded(run);
  if (run) (void)ParseHotpatchJson(run->stdout_data);
  CheckDecoded(DecodeSample(body, 42));
  auto chunk = DecodeGetChunk(body);
  CheckDecoded(chunk);
  if (chunk && body.contains("data")) {
    // Base64 is never shorter than what it encodes.
    FUZZ_CHECK(chunk->data.size() <= body["data"].get_ref<const std::string&>().size());
  }
  CheckDecoded(DecodeKernelLogMark(body));
  auto lines = DecodeKernelLog(body);
  CheckDecoded(lines);
  if (lines && body.contains("lines")) FUZZ_CHECK(lines->size() == body["lines"].size());
}

}  // namespace

PATCHLAB_FUZZ_TARGET(agent_reply) {
  std::string_view bytes = patchlab::fuzz::AsText(data, size);
  LineSplitter splitter(1 << 20);
  bool overlong = false;
  // Two reads' worth, so that a line split across reads is joined as on the socket.
  auto lines = splitter.Feed(bytes.substr(0, bytes.size() / 2), &overlong);
  auto rest = splitter.Feed(bytes.substr(bytes.size() / 2), &overlong);
  lines.insert(lines.end(), rest.begin(), rest.end());
  for (const std::string& line : lines) {
    auto msg = ParseAgentLine(line);
    if (!msg) {
      FUZZ_CHECK(msg.error().code() == patchlab::ErrorCode::kInfra);
      continue;
    }
    FUZZ_CHECK(msg->body.is_object());
    DecodeEvery(msg->body);
  }
  return 0;
}
