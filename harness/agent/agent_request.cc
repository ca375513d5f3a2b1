#include "harness/agent/agent_request.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

namespace patchlab::agent {
namespace {

using nlohmann::json;
namespace proto = harness::agent_protocol;

// Thrown by the field readers below and caught in ParseAgentRequest: the
// decoder's only exception, never out of this file.
class BadField : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Bad(std::string_view key, const std::string& what) {
  throw BadField("field '" + std::string(key) + "': " + what);
}

// A value as an error message shows it: numbers and booleans as written, the
// rest by type (a string can be 4 MiB long).
std::string Shown(const json& value) {
  if (value.is_number() || value.is_boolean()) return value.dump();
  return value.type_name();
}

const json* Find(const json& request, std::string_view key) {
  auto it = request.find(key);
  return it == request.end() ? nullptr : &*it;
}

const json& Required(const json& request, std::string_view key) {
  const json* value = Find(request, key);
  if (value == nullptr) Bad(key, "missing");
  return *value;
}

// An integer in [lo, hi]. A float (1e30, 2.5) is refused, not cast: casting
// a double that does not fit is undefined behaviour.
int64_t IntegerIn(std::string_view key, const json& value, int64_t lo, int64_t hi) {
  if (value.is_number_unsigned()) {
    uint64_t u = value.get<uint64_t>();
    if (hi >= 0 && u <= static_cast<uint64_t>(hi) && static_cast<int64_t>(u) >= lo) {
      return static_cast<int64_t>(u);
    }
  } else if (value.is_number_integer()) {
    int64_t i = value.get<int64_t>();
    if (i >= lo && i <= hi) return i;
  } else {
    Bad(key, "expected an integer, got " + Shown(value));
  }
  Bad(key, Shown(value) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
}

uint64_t Unsigned(std::string_view key, const json& value) {
  if (!value.is_number_unsigned()) Bad(key, "expected an unsigned integer, got " + Shown(value));
  return value.get<uint64_t>();
}

// A string for a C API (a path, an argument): a NUL byte would cut it short
// without a word, so it is refused.
std::string CString(std::string_view key, const json& value) {
  if (!value.is_string()) Bad(key, "expected a string, got " + Shown(value));
  std::string text = value.get<std::string>();
  if (text.find('\0') != std::string::npos) Bad(key, "holds a NUL byte");
  return text;
}

pid_t ProcessId(const json& request) {
  // 0 and negative pids name process groups: kill(-1, ...) from PID 1 would
  // signal every process in the guest.
  return static_cast<pid_t>(
      IntegerIn("pid", Required(request, "pid"), 1, std::numeric_limits<pid_t>::max()));
}

int64_t TimeoutMs(const json& request, int64_t fallback) {
  const json* value = Find(request, "timeout_ms");
  return value == nullptr ? fallback : IntegerIn("timeout_ms", *value, 0, kMaxRequestTimeoutMs);
}

uint64_t Offset(const json& request) {
  const json* value = Find(request, "offset");
  if (value == nullptr) return 0;
  return static_cast<uint64_t>(IntegerIn("offset", *value, 0, std::numeric_limits<off_t>::max()));
}

void DecodeExec(const json& request, bool capture, AgentRequest& out) {
  const json& argv = Required(request, "argv");
  if (!argv.is_array()) Bad("argv", "expected a list of strings, got " + Shown(argv));
  if (argv.empty()) Bad("argv", "empty");
  for (size_t i = 0; i < argv.size(); ++i) {
    out.argv.push_back(CString("argv[" + std::to_string(i) + "]", argv[i]));
  }
  bool has_path = false;
  if (const json* env = Find(request, "env")) {
    if (!env->is_object()) Bad("env", "expected an object of strings, got " + Shown(*env));
    for (const auto& [name, value] : env->items()) {
      if (name.empty() || name.find_first_of(std::string_view("=\0", 2)) != std::string::npos) {
        Bad("env", "a variable name is empty or holds '=' or a NUL byte");
      }
      out.env.push_back(name + "=" + CString("env." + name, value));
      if (name == "PATH") has_path = true;
    }
  }
  if (!has_path) out.env.push_back("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
  if (const json* cwd = Find(request, "cwd")) out.cwd = CString("cwd", *cwd);
  if (capture) {
    if (const json* in = Find(request, "stdin")) {
      if (!in->is_string()) Bad("stdin", "expected a string, got " + Shown(*in));
      out.stdin_data = in->get<std::string>();
    }
    out.timeout_ms = TimeoutMs(request, 60000);
  } else {
    if (const json* path = Find(request, "stdout")) out.stdout_path = CString("stdout", *path);
    if (const json* path = Find(request, "stderr")) out.stderr_path = CString("stderr", *path);
  }
}

void DecodePut(const json& request, AgentRequest& out) {
  out.path = CString("path", Required(request, "path"));
  if (out.path.empty()) Bad("path", "empty");
  out.offset = Offset(request);
  if (const json* mode = Find(request, "mode")) {
    out.mode = static_cast<mode_t>(IntegerIn("mode", *mode, 0, 07777));
  }
  const json& data = Required(request, "data");
  if (!data.is_string()) Bad("data", "expected base64 text, got " + Shown(data));
  if (!proto::Base64Decode(data.get_ref<const std::string&>(), &out.data)) {
    Bad("data", "not base64");
  }
}

void DecodeGet(const json& request, AgentRequest& out) {
  out.path = CString("path", Required(request, "path"));
  if (out.path.empty()) Bad("path", "empty");
  out.offset = Offset(request);
  if (const json* length = Find(request, "length")) {
    // Larger asks are answered with one chunk, as the protocol says.
    out.length =
        static_cast<size_t>(std::min<uint64_t>(Unsigned("length", *length), proto::kMaxChunkBytes));
  }
}

// Fills `out`'s fields for its op from `request`; throws BadField.
void DecodeFields(const json& request, AgentRequest& out) {
  switch (out.op) {
    case AgentOp::kExec:
    case AgentOp::kRun:
      DecodeExec(request, out.op == AgentOp::kRun, out);
      return;
    case AgentOp::kWait:
      out.pid = ProcessId(request);
      out.timeout_ms = TimeoutMs(request, 0);
      return;
    case AgentOp::kKill:
      out.pid = ProcessId(request);
      out.signal = static_cast<int>(IntegerIn("signal", Required(request, "signal"), 0, 64));
      return;
    case AgentOp::kSample:
      out.pid = ProcessId(request);
      return;
    case AgentOp::kProcs:
      out.path = CString("exe", Required(request, "exe"));
      if (out.path.empty() || out.path.front() != '/') Bad("exe", "not an absolute path");
      return;
    case AgentOp::kPut:
      DecodePut(request, out);
      return;
    case AgentOp::kGet:
      DecodeGet(request, out);
      return;
    case AgentOp::kKmsg:
      out.since = Unsigned("since", Required(request, "since"));
      return;
    case AgentOp::kHello:
    case AgentOp::kKmsgMark:
    case AgentOp::kShutdown:
      return;
  }
}

std::optional<AgentOp> OpNamed(std::string_view name) {
  static constexpr std::pair<std::string_view, AgentOp> kOps[] = {{"hello", AgentOp::kHello},
                                                                  {"exec", AgentOp::kExec},
                                                                  {"run", AgentOp::kRun},
                                                                  {"wait", AgentOp::kWait},
                                                                  {"kill", AgentOp::kKill},
                                                                  {"sample", AgentOp::kSample},
                                                                  {"procs", AgentOp::kProcs},
                                                                  {"put", AgentOp::kPut},
                                                                  {"get", AgentOp::kGet},
                                                                  {"kmsg", AgentOp::kKmsg},
                                                                  {"kmsg_mark", AgentOp::kKmsgMark},
                                                                  {"shutdown", AgentOp::kShutdown}};
  for (const auto& [op_name, op] : kOps) {
    if (op_name == name) return op;
  }
  return std::nullopt;
}

// The line as JSON; throws json::exception (not JSON) or BadField (too deep).
json ParseBounded(std::string_view line) {
  // The callback sees each value's depth before the parser goes deeper, so a
  // line of a million '[' ends at the first one too many.
  auto bound = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxRequestDepth) {
      throw BadField("nested deeper than " + std::to_string(kMaxRequestDepth) + " levels");
    }
    return true;
  };
  return json::parse(line, bound);
}

}  // namespace

std::expected<AgentRequest, RequestError> ParseAgentRequest(std::string_view line) {
  json request;
  try {
    request = ParseBounded(line);
  } catch (const BadField& e) {
    return std::unexpected(RequestError{std::nullopt, e.what()});
  } catch (const json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, ...".
    std::string_view what = e.what();
    if (size_t bracket = what.find("] "); bracket != std::string_view::npos) {
      what.remove_prefix(bracket + 2);
    }
    return std::unexpected(RequestError{std::nullopt, "not JSON: " + std::string(what)});
  }
  if (!request.is_object()) {
    return std::unexpected(RequestError{std::nullopt, "not a JSON object"});
  }
  const json* id = Find(request, "id");
  if (id == nullptr || !id->is_number_unsigned()) {
    return std::unexpected(RequestError{std::nullopt, "no unsigned integer id"});
  }
  AgentRequest out;
  out.id = id->get<uint64_t>();
  const json* op = Find(request, "op");
  if (op == nullptr || !op->is_string()) {
    return std::unexpected(RequestError{out.id, "bad request: field 'op': not a string"});
  }
  const std::string& op_name = op->get_ref<const std::string&>();
  auto known = OpNamed(op_name);
  if (!known) {
    return std::unexpected(RequestError{out.id, "unknown op '" + op_name.substr(0, 64) + "'"});
  }
  out.op = *known;
  try {
    DecodeFields(request, out);
  } catch (const std::exception& e) {
    return std::unexpected(RequestError{out.id, std::string("bad request: ") + e.what()});
  }
  return out;
}

}  // namespace patchlab::agent
