// What the guest agent reads from the host (harness/agent/agent_request.h):
// bytes split on '\n' as Agent::HandleInput splits them, each line decoded as
// the agent decodes it before acting. A request that decodes must hold every
// promise the agent relies on (it is PID 1 in the guest: a pid of -1 or a
// path cut short by a NUL byte would act on the wrong thing).
#include <limits>
#include <string>

#include "fuzz/fuzz_target.h"
#include "harness/agent/agent_request.h"

namespace {

using patchlab::agent::AgentOp;
using patchlab::agent::AgentRequest;

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

void CheckRequest(const AgentRequest& r) {
  switch (r.op) {
    case AgentOp::kExec:
    case AgentOp::kRun:
      FUZZ_CHECK(!r.argv.empty());
      for (const std::string& a : r.argv) FUZZ_CHECK(!HasNul(a));
      FUZZ_CHECK(!r.env.empty());  // a PATH at least
      for (const std::string& e : r.env) {
        FUZZ_CHECK(!HasNul(e));
        FUZZ_CHECK(e.find('=') != std::string::npos && e.find('=') > 0);
      }
      FUZZ_CHECK(!HasNul(r.cwd) && !HasNul(r.stdout_path) && !HasNul(r.stderr_path));
      FUZZ_CHECK(r.timeout_ms >= 0 && r.timeout_ms <= patchlab::agent::kMaxRequestTimeoutMs);
      break;
    case AgentOp::kWait:
    case AgentOp::kKill:
    case AgentOp::kSample:
      FUZZ_CHECK(r.pid > 0);
      FUZZ_CHECK(r.signal >= 0 && r.signal <= 64);
      FUZZ_CHECK(r.timeout_ms >= 0 && r.timeout_ms <= patchlab::agent::kMaxRequestTimeoutMs);
      break;
    case AgentOp::kProcs:
      FUZZ_CHECK(!r.path.empty() && r.path.front() == '/' && !HasNul(r.path));
      break;
    case AgentOp::kPut:
    case AgentOp::kGet:
      FUZZ_CHECK(!r.path.empty() && !HasNul(r.path));
      FUZZ_CHECK(r.offset <= static_cast<uint64_t>(std::numeric_limits<off_t>::max()));
      FUZZ_CHECK(r.mode <= 07777);
      FUZZ_CHECK(r.length <= patchlab::harness::agent_protocol::kMaxChunkBytes);
      break;
    case AgentOp::kHello:
    case AgentOp::kKmsgMark:
    case AgentOp::kKmsg:
    case AgentOp::kShutdown:
      break;
  }
}

}  // namespace

PATCHLAB_FUZZ_TARGET(agent_request) {
  std::string_view bytes = patchlab::fuzz::AsText(data, size);
  size_t start = 0;
  while (start <= bytes.size()) {
    size_t nl = bytes.find('\n', start);
    std::string_view line =
        bytes.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    auto request = patchlab::agent::ParseAgentRequest(line);
    if (request) {
      CheckRequest(*request);
    } else {
      FUZZ_CHECK(!request.error().message.empty());
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return 0;
}
