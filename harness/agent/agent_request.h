// AgentRequest: one request line from the host (harness/protocol/
// agent_protocol.h), decoded and checked before the agent acts on it.
//
// The agent runs as PID 1 in the guest, so a request it misreads can kill
// every process (kill with pid -1), write anywhere or hang it. Every field is
// checked here for its type and range; nothing is thrown out of the decoder
// and no number is cast before it is known to fit. The agent links only libc,
// the standard library and nlohmann's headers, so errors are plain strings.
//
// Thread-safety: pure functions.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/protocol/agent_protocol.h"

namespace patchlab::agent {

enum class AgentOp {
  kHello,
  kExec,
  kRun,
  kWait,
  kKill,
  kSample,
  kProcs,
  kPut,
  kGet,
  kKmsgMark,
  kKmsg,
  kShutdown
};

// The longest wait or run a request may ask for; beyond it a deadline on the
// agent's clock would overflow long before anyone waited for it.
inline constexpr int64_t kMaxRequestTimeoutMs = int64_t{30} * 24 * 3600 * 1000;
// How deep a request's JSON may nest (the protocol's deepest is 2).
inline constexpr int kMaxRequestDepth = 16;

struct AgentRequest {
  uint64_t id = 0;
  AgentOp op = AgentOp::kHello;
  // exec, run
  std::vector<std::string> argv;         // not empty; no NUL byte in any
  std::vector<std::string> env;          // "NAME=value", with a PATH when the request has none
  std::string cwd = "/";                 // no NUL byte
  std::string stdout_path, stderr_path;  // exec; empty: the agent's output folder, PID.out/.err
  std::string stdin_data;                // run
  int64_t timeout_ms = 0;                // run (default 60000), wait (default 0); <= the max above
  // wait, kill, sample: a process id > 0 (0 and negatives name process groups)
  pid_t pid = 0;
  int signal = 0;  // kill: 0..64
  // put, get: the file; procs: the executable (`exe`, an absolute path)
  std::string path;                                         // not empty, no NUL byte
  uint64_t offset = 0;                                      // fits an off_t
  mode_t mode = 0644;                                       // put: permission bits only (<= 07777)
  std::string data;                                         // put: the bytes, decoded from base64
  size_t length = harness::agent_protocol::kMaxChunkBytes;  // get: at most kMaxChunkBytes
  uint64_t since = 0;                                       // kmsg
};

struct RequestError {
  // The request's id when the line had a valid one: the agent answers that
  // request with ok false. Without it the agent reports an "error" event.
  std::optional<uint64_t> id;
  std::string message;  // names the field and what is wrong with it
};

// Decodes one line (without its '\n'). Fails for text that is not a JSON
// object, nests deeper than kMaxRequestDepth, lacks an unsigned id or a
// string op, names an unknown op, or has a field of the wrong type or range.
std::expected<AgentRequest, RequestError> ParseAgentRequest(std::string_view line);

}  // namespace patchlab::agent
