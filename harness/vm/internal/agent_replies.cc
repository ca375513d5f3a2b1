#include "harness/vm/internal/agent_replies.h"

#include <stdexcept>

#include "base/json_util.h"
#include "harness/protocol/agent_protocol.h"

namespace patchlab::harness::internal {
namespace {

using nlohmann::json;

// Runs a decoder written with JsonFieldOr (which throws on a bad field) and
// turns what it throws into an Error naming `what`.
template <typename F>
auto Decode(std::string_view what, F&& decode) -> Result<decltype(decode())> {
  try {
    return decode();
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kInfra, "malformed {}: {}", what, e.what());
  }
}

}  // namespace

Result<AgentLine> ParseAgentLine(std::string_view line) {
  auto parsed = ParseJson(line, "agent line");
  if (!parsed) return Fail(ErrorCode::kInfra, "{}", parsed.error().message());
  if (!parsed->is_object()) return Fail(ErrorCode::kInfra, "agent line: not a JSON object");
  return Decode("agent line", [&] {
    AgentLine out;
    const json& j = *parsed;
    if (j.contains("event")) {
      out.kind = AgentLine::Kind::kEvent;
      out.event = JsonFieldOr<std::string>(j, "event", "");
    } else if (j.contains("id") && j.contains("ok")) {
      out.kind = AgentLine::Kind::kReply;
      out.id = JsonInteger<uint64_t>(j, "id");
      out.ok = JsonFieldOr<bool>(j, "ok", false);
      if (!out.ok) out.error = JsonFieldOr<std::string>(j, "error", "no reason given");
    } else {
      throw std::invalid_argument("neither a reply (id, ok) nor an event");
    }
    out.body = std::move(*parsed);
    return out;
  });
}

Result<AgentHello> DecodeHello(const json& reply) {
  return Decode("hello reply", [&] {
    AgentHello h;
    h.agent_version = JsonFieldOr<std::string>(reply, "agent_version", "");
    h.kernel = JsonFieldOr<std::string>(reply, "kernel", "");
    h.machine = JsonFieldOr<std::string>(reply, "machine", "");
    h.cpu_model = JsonFieldOr<std::string>(reply, "cpu_model", "");
    h.ncpus = JsonFieldOr<int>(reply, "ncpus", 0);
    h.uptime_s = JsonFieldOr<double>(reply, "uptime_s", 0.0);
    h.boot_id = JsonFieldOr<std::string>(reply, "boot_id", "");
    return h;
  });
}

Result<pid_t> DecodePid(const json& message) {
  return Decode("pid", [&] { return JsonFieldOr<pid_t>(message, "pid", 0); });
}

Result<ExitStatus> DecodeExit(const json& message) {
  return Decode("exit status", [&] {
    ExitStatus e;
    e.exited = JsonFieldOr<bool>(message, "exited", false);
    e.code = JsonFieldOr<int>(message, "code", 0);
    e.signal = JsonFieldOr<int>(message, "signal", 0);
    e.core_dumped = JsonFieldOr<bool>(message, "core_dumped", false);
    e.timed_out = JsonFieldOr<bool>(message, "timed_out", false);
    return e;
  });
}

Result<RunResult> DecodeRun(const json& reply) {
  auto exit = DecodeExit(reply);
  if (!exit) return std::unexpected(std::move(exit.error()));
  return Decode("run reply", [&] {
    RunResult out;
    out.exit = *exit;
    out.stdout_data = JsonFieldOr<std::string>(reply, "stdout", "");
    out.stderr_data = JsonFieldOr<std::string>(reply, "stderr", "");
    return out;
  });
}

Result<ProcessSample> DecodeSample(const json& reply, pid_t pid) {
  return Decode("sample reply", [&] {
    ProcessSample s;
    s.pid = pid;
    s.utime_ticks = JsonFieldOr<uint64_t>(reply, "utime_ticks", 0);
    s.stime_ticks = JsonFieldOr<uint64_t>(reply, "stime_ticks", 0);
    s.clk_tck = JsonFieldOr<int64_t>(reply, "clk_tck", 100);
    s.utime_s = JsonFieldOr<double>(reply, "utime_s", 0.0);
    s.stime_s = JsonFieldOr<double>(reply, "stime_s", 0.0);
    s.rss_kib = JsonFieldOr<uint64_t>(reply, "rss_kib", 0);
    s.pss_kib = JsonFieldOr<uint64_t>(reply, "pss_kib", 0);
    s.private_dirty_kib = JsonFieldOr<uint64_t>(reply, "private_dirty_kib", 0);
    s.load1 = JsonFieldOr<double>(reply, "load1", 0.0);
    s.load5 = JsonFieldOr<double>(reply, "load5", 0.0);
    s.load15 = JsonFieldOr<double>(reply, "load15", 0.0);
    s.uptime_s = JsonFieldOr<double>(reply, "uptime_s", 0.0);
    return s;
  });
}

Result<std::vector<ProcessCpu>> DecodeProcesses(const json& reply) {
  return Decode("procs reply", [&] {
    auto it = reply.find("processes");
    if (it == reply.end() || !it->is_array()) {
      throw std::invalid_argument("field 'processes': missing or not a list");
    }
    std::vector<ProcessCpu> out;
    out.reserve(it->size());
    for (const json& p : *it) {
      ProcessCpu c;
      c.pid = JsonFieldOr<pid_t>(p, "pid", 0);
      c.ppid = JsonFieldOr<pid_t>(p, "ppid", 0);
      c.comm = JsonFieldOr<std::string>(p, "comm", "");
      c.start_ticks = JsonFieldOr<uint64_t>(p, "start_ticks", 0);
      c.cpu_ns = JsonFieldOr<uint64_t>(p, "cpu_ns", 0);
      out.push_back(std::move(c));
    }
    return out;
  });
}

Result<GetChunk> DecodeGetChunk(const json& reply) {
  auto chunk = Decode("get reply", [&] {
    GetChunk c;
    c.data = JsonFieldOr<std::string>(reply, "data", "");
    c.eof = JsonFieldOr<bool>(reply, "eof", true);
    return c;
  });
  if (!chunk) return chunk;
  std::string bytes;
  if (!agent_protocol::Base64Decode(chunk->data, &bytes)) {
    return Fail(ErrorCode::kInfra, "malformed get reply: payload is not base64");
  }
  chunk->data = std::move(bytes);
  return chunk;
}

Result<uint64_t> DecodeKernelLogMark(const json& reply) {
  return Decode("kmsg_mark reply", [&] { return JsonFieldOr<uint64_t>(reply, "mark", 0); });
}

Result<std::vector<KernelLogLine>> DecodeKernelLog(const json& reply) {
  return Decode("kmsg reply", [&] {
    std::vector<KernelLogLine> lines;
    auto it = reply.find("lines");
    if (it == reply.end()) return lines;
    if (!it->is_array()) throw std::invalid_argument("field 'lines': expected a list");
    lines.reserve(it->size());
    for (const json& l : *it) {
      lines.push_back({JsonFieldOr<uint64_t>(l, "seq", 0), JsonFieldOr<int>(l, "level", 0),
                       JsonFieldOr<uint64_t>(l, "usec", 0),
                       JsonFieldOr<std::string>(l, "text", "")});
    }
    return lines;
  });
}

json ParseHotpatchJson(std::string_view stdout_data) {
  auto parsed = ParseJson(stdout_data, "hotpatch --json");
  return parsed ? std::move(*parsed) : json(nullptr);
}

}  // namespace patchlab::harness::internal
