// Decoding what the guest agent sends (harness/protocol/agent_protocol.h)
// into the host's types. The guest is not trusted: it runs the patch under
// test, and a patch that scribbles over the agent, or a hostile guest, can put
// anything on the channel. Nothing here throws or casts a number it has not
// checked: a line that is not the protocol, or a field of the wrong type or
// range, is an Error naming the field (kInfra: the channel broke its protocol).
//
// Thread-safety: pure functions.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/exit_status.h"
#include "base/process_table.h"
#include "harness/vm/agent_client.h"

namespace patchlab::harness::internal {

// One line of the agent channel, checked for the protocol's shape.
struct AgentLine {
  enum class Kind { kReply, kEvent };
  Kind kind = Kind::kReply;
  uint64_t id = 0;      // kReply: the request it answers
  bool ok = false;      // kReply
  std::string error;    // kReply with ok false: the agent's reason
  std::string event;    // kEvent: "ready", "heartbeat", "exit", "error", ...
  nlohmann::json body;  // the whole message, for the decoders below
};

// A reply ({"id": N, "ok": BOOL, ...}) or an event ({"event": NAME, ...}).
// kInfra naming what is wrong for anything else (not JSON, nested too deep,
// an id that is not an unsigned integer, ok that is not a bool).
Result<AgentLine> ParseAgentLine(std::string_view line);

// The results of each operation, and the "exit" event's fields. Absent fields
// keep their defaults (older agents send fewer); present ones must have their
// type and fit it.
Result<AgentHello> DecodeHello(const nlohmann::json& reply);
Result<pid_t> DecodePid(const nlohmann::json& message);        // exec reply, exit event
Result<ExitStatus> DecodeExit(const nlohmann::json& message);  // wait/run reply, exit event
Result<RunResult> DecodeRun(const nlohmann::json& reply);
Result<ProcessSample> DecodeSample(const nlohmann::json& reply, pid_t pid);
// procs: the "processes" list is required (an agent without the op has none).
Result<std::vector<ProcessCpu>> DecodeProcesses(const nlohmann::json& reply);
struct GetChunk {
  std::string data;  // decoded from base64
  bool eof = true;
};
Result<GetChunk> DecodeGetChunk(const nlohmann::json& reply);
Result<uint64_t> DecodeKernelLogMark(const nlohmann::json& reply);
Result<std::vector<KernelLogLine>> DecodeKernelLog(const nlohmann::json& reply);
// `hotpatch ... --json` output from the guest: null when it is not JSON.
nlohmann::json ParseHotpatchJson(std::string_view stdout_data);

}  // namespace patchlab::harness::internal
