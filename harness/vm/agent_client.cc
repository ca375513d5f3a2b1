#include "harness/vm/agent_client.h"

#include <sys/socket.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "base/subprocess.h"
#include "harness/protocol/agent_protocol.h"
#include "harness/vm/internal/agent_replies.h"
#include "harness/vm/internal/unix_socket.h"

namespace patchlab::harness {
namespace proto = agent_protocol;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kKeptGarbageLines = 16;

// The tail of a protocol line whose head the host never saw: a ready state is
// saved while the agent writes (its periodic "ready" and heartbeat lines), and
// the guest's serial port sends the rest of that line to whoever connects after
// a restore (the agent sends nothing but whole lines). Nothing waiting can be
// answered by it, so nothing is failed by it: the next line is whole again.
bool IsTailOfACutLine(const std::string& line) {
  return !line.empty() && line.front() != '{' && line.back() == '}' &&
         line.find('"') != std::string::npos;
}

}  // namespace

struct AgentClient::State {
  ScopedFd socket;
  std::thread reader;
  std::mutex mu;
  std::condition_variable cv;
  struct Pending {
    bool done = false;
    internal::AgentLine reply;
    std::optional<Error> error;
  };
  std::map<uint64_t, Pending*> pending;
  uint64_t next_id = 1;
  bool closed = false;
  std::string close_reason;
  bool ready = false;
  Clock::time_point last_heard = Clock::now();
  uint64_t heartbeats = 0;
  std::vector<std::pair<pid_t, ExitStatus>> exits;
  std::deque<std::string> garbage;
  std::mutex write_mu;
  std::mutex log_mu;
  FILE* log = nullptr;
  Clock::time_point started = Clock::now();
};

AgentClient::AgentClient(ScopedFd socket, AgentClientOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  state_->socket = std::move(socket);
  if (!options_.log_path.empty()) state_->log = std::fopen(options_.log_path.c_str(), "a");
  state_->reader = std::thread([this] { ReaderLoop(); });
}

std::unique_ptr<AgentClient> AgentClient::Adopt(ScopedFd socket, AgentClientOptions options) {
  return std::unique_ptr<AgentClient>(new AgentClient(std::move(socket), std::move(options)));
}

Result<std::unique_ptr<AgentClient>> AgentClient::Connect(const std::filesystem::path& socket_path,
                                                          AgentClientOptions options,
                                                          milliseconds timeout) {
  auto fd = internal::ConnectUnix(socket_path, timeout);
  if (!fd) return std::unexpected(std::move(fd.error()).AddContext(options.name + " channel"));
  return Adopt(std::move(*fd), std::move(options));
}

AgentClient::~AgentClient() {
  // Waking the reader: shutdown makes its blocked read return 0.
  ::shutdown(state_->socket.get(), SHUT_RDWR);
  if (state_->reader.joinable()) state_->reader.join();
  if (state_->log) std::fclose(state_->log);
}

void AgentClient::ReaderLoop() {
  internal::LineSplitter splitter(proto::kMaxLineBytes);
  std::string buf(65536, '\0');
  std::string reason;
  while (true) {
    ssize_t n = ::read(state_->socket.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      reason = n == 0 ? "agent channel closed (agent or VM gone)"
                      : fmt::format("agent channel read failed: {}", std::strerror(errno));
      break;
    }
    bool overlong = false;
    for (const std::string& line :
         splitter.Feed(std::string_view(buf.data(), static_cast<size_t>(n)), &overlong)) {
      HandleLine(line);
    }
  }
  std::lock_guard lock(state_->mu);
  state_->closed = true;
  state_->close_reason = reason;
  for (auto& [id, p] : state_->pending) {
    p->done = true;
    p->error = Error(ErrorCode::kInfra, fmt::format("{}: {}", options_.name, reason));
  }
  state_->pending.clear();
  state_->cv.notify_all();
}

void AgentClient::HandleLine(const std::string& line) {
  if (state_->log) {
    std::lock_guard lock(state_->log_mu);
    double t = std::chrono::duration<double>(Clock::now() - state_->started).count();
    std::fprintf(state_->log, "%10.3f < %s\n", t, line.c_str());
    std::fflush(state_->log);
  }
  auto msg = internal::ParseAgentLine(line);
  std::lock_guard lock(state_->mu);
  state_->last_heard = Clock::now();
  if (msg && msg->kind == internal::AgentLine::Kind::kReply) {
    auto it = state_->pending.find(msg->id);
    if (it == state_->pending.end()) return;  // its caller gave up (timeout)
    it->second->done = true;
    it->second->reply = std::move(*msg);
    state_->pending.erase(it);
    state_->cv.notify_all();
    return;
  }
  Status event = msg ? HandleEvent(*msg) : Status(std::unexpected(msg.error()));
  if (!event && IsTailOfACutLine(line)) {
    Log("harness")->info("{}: skipped the tail of a line cut by a save: '{}'", options_.name,
                         line.substr(0, 200));
    return;
  }
  if (!event) {
    // Not the protocol: fail what is waiting (its reply may have been this line)
    // with a message that shows the line, rather than let it time out silently.
    std::string shown = line.substr(0, 200);
    Log("harness")->warn("{}: not a protocol line ({}): '{}'", options_.name,
                         event.error().message(), shown);
    state_->garbage.push_back(shown);
    if (state_->garbage.size() > kKeptGarbageLines) state_->garbage.pop_front();
    for (auto& [id, p] : state_->pending) {
      p->done = true;
      p->error =
          Error(ErrorCode::kInfra,
                fmt::format("{}: malformed line on the agent channel: '{}'", options_.name, shown));
    }
    state_->pending.clear();
  }
  state_->cv.notify_all();
}

Status AgentClient::HandleEvent(const internal::AgentLine& msg) {
  if (msg.event == "ready") {
    state_->ready = true;
  } else if (msg.event == "heartbeat") {
    ++state_->heartbeats;
  } else if (msg.event == "exit") {
    auto pid = internal::DecodePid(msg.body);
    if (!pid) return std::unexpected(pid.error());
    auto exit = internal::DecodeExit(msg.body);
    if (!exit) return std::unexpected(exit.error());
    state_->exits.emplace_back(*pid, *exit);
  } else if (msg.event == "error") {
    auto why = msg.body.find("error");
    Log("harness")->warn("{}: agent reports: {}", options_.name,
                         why != msg.body.end() && why->is_string() ? why->get<std::string>()
                                                                   : std::string("no reason"));
  }
  return {};
}

Status AgentClient::WaitReady(milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  bool ok = state_->cv.wait_for(lock, timeout, [&] { return state_->ready || state_->closed; });
  if (state_->ready) return {};
  if (state_->closed)
    return Fail(ErrorCode::kInfra, "{}: {} before the ready line", options_.name,
                state_->close_reason);
  (void)ok;
  return Fail(ErrorCode::kTimeout, "{}: no ready line within {} ms", options_.name,
              timeout.count());
}

Result<json> AgentClient::Call(json request, milliseconds timeout) {
  if (timeout.count() <= 0) timeout = options_.default_timeout;
  State::Pending pending;
  uint64_t id;
  {
    std::lock_guard lock(state_->mu);
    if (state_->closed)
      return Fail(ErrorCode::kInfra, "{}: {}", options_.name, state_->close_reason);
    id = state_->next_id++;
    state_->pending[id] = &pending;
  }
  request["id"] = id;
  const std::string op = request.value("op", std::string("?"));
  std::string line = request.dump() + "\n";
  if (state_->log) {
    std::lock_guard lock(state_->log_mu);
    double t = std::chrono::duration<double>(Clock::now() - state_->started).count();
    // File payloads would drown the log; the op and size say enough.
    std::string shown = line.size() > 600
                            ? line.substr(0, 300) + fmt::format("... ({} bytes)", line.size())
                            : line.substr(0, line.size() - 1);
    std::fprintf(state_->log, "%10.3f > %s\n", t, shown.c_str());
    std::fflush(state_->log);
  }
  Status written;
  {
    std::lock_guard lock(state_->write_mu);
    written = internal::WriteAll(state_->socket.get(), line, options_.name + " channel");
  }
  std::unique_lock lock(state_->mu);
  if (!written) {
    state_->pending.erase(id);
    return Fail(ErrorCode::kInfra, "{}: {}", options_.name, written.error().ToString());
  }
  state_->cv.wait_for(lock, timeout, [&] { return pending.done; });
  if (!pending.done) {
    state_->pending.erase(id);
    return Fail(ErrorCode::kTimeout, "{}: no reply to '{}' within {} ms", options_.name, op,
                timeout.count());
  }
  if (pending.error) return std::unexpected(*pending.error);
  if (!pending.reply.ok) {
    const std::string& why = pending.reply.error;
    ErrorCode code = why.find("No such file") != std::string::npos ||
                             why.find("no child") != std::string::npos ||
                             why.find("no process") != std::string::npos
                         ? ErrorCode::kNotFound
                         : ErrorCode::kIo;
    return Fail(code, "{}: {} failed: {}", options_.name, op, why);
  }
  return std::move(pending.reply.body);
}

Result<AgentHello> AgentClient::Hello(milliseconds timeout) {
  auto r = Call({{"op", "hello"}}, timeout);
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodeHello(*r), options_.name);
}

namespace {
json ExecJson(const char* op, const ExecRequest& r) {
  json j = {{"op", op}, {"argv", r.argv}, {"env", r.env}, {"cwd", r.cwd}};
  if (!r.stdout_path.empty()) j["stdout"] = r.stdout_path;
  if (!r.stderr_path.empty()) j["stderr"] = r.stderr_path;
  return j;
}
}  // namespace

Result<pid_t> AgentClient::Exec(const ExecRequest& request, milliseconds timeout) {
  auto r = Call(ExecJson("exec", request), timeout);
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodePid(*r), options_.name);
}

Result<ExitStatus> AgentClient::Wait(pid_t pid, milliseconds wait_for) {
  // The reply comes when the child ends or the agent's own deadline passes;
  // our deadline allows for the channel's latency on top.
  auto r = Call({{"op", "wait"}, {"pid", pid}, {"timeout_ms", wait_for.count()}},
                wait_for + options_.default_timeout);
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodeExit(*r), options_.name);
}

Status AgentClient::Kill(pid_t pid, int signal) {
  auto r = Call({{"op", "kill"}, {"pid", pid}, {"signal", signal}}, milliseconds{0});
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<RunResult> AgentClient::Run(const ExecRequest& request, milliseconds run_for) {
  json j = ExecJson("run", request);
  j["timeout_ms"] = run_for.count();
  auto r = Call(std::move(j), run_for + options_.default_timeout);
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodeRun(*r), options_.name);
}

Result<ProcessSample> AgentClient::Sample(pid_t pid) {
  auto r = Call({{"op", "sample"}, {"pid", pid}}, milliseconds{0});
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodeSample(*r, pid), options_.name);
}

Result<std::vector<ProcessCpu>> AgentClient::Processes(const std::string& exe) {
  auto r = Call({{"op", "procs"}, {"exe", exe}}, milliseconds{0});
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodeProcesses(*r), options_.name);
}

Status AgentClient::Put(const std::string& guest_path, mode_t mode, std::string_view bytes) {
  size_t offset = 0;
  do {
    std::string_view chunk = bytes.substr(offset, proto::kMaxChunkBytes);
    auto r = Call({{"op", "put"},
                   {"path", guest_path},
                   {"mode", mode},
                   {"offset", offset},
                   {"data", proto::Base64Encode(chunk)}},
                  milliseconds{0});
    if (!r) return std::unexpected(std::move(r.error()).AddContext("putting " + guest_path));
    offset += chunk.size();
  } while (offset < bytes.size());
  return {};
}

Result<std::string> AgentClient::Get(const std::string& guest_path) {
  std::string out;
  while (true) {
    auto r = Call({{"op", "get"},
                   {"path", guest_path},
                   {"offset", out.size()},
                   {"length", proto::kMaxChunkBytes}},
                  milliseconds{0});
    if (!r) return std::unexpected(r.error());
    auto chunk = internal::DecodeGetChunk(*r);
    if (!chunk) {
      return std::unexpected(
          std::move(chunk.error()).AddContext(options_.name + ": get " + guest_path));
    }
    out += chunk->data;
    if (chunk->eof || chunk->data.empty()) return out;
  }
}

Result<uint64_t> AgentClient::KernelLogMark() {
  auto r = Call({{"op", "kmsg_mark"}}, milliseconds{0});
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodeKernelLogMark(*r), options_.name);
}

Result<std::vector<KernelLogLine>> AgentClient::KernelLog(uint64_t since_mark) {
  auto r = Call({{"op", "kmsg"}, {"since", since_mark}}, milliseconds{0});
  if (!r) return std::unexpected(r.error());
  return WithContext(internal::DecodeKernelLog(*r), options_.name);
}

Status AgentClient::Shutdown() {
  auto r = Call({{"op", "shutdown"}}, milliseconds{0});
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<HotpatchResult> AgentClient::Hotpatch(const std::string& subcommand,
                                             std::vector<std::string> args, milliseconds run_for) {
  ExecRequest req;
  req.argv = {options_.hotpatch_path, subcommand};
  req.env = options_.hotpatch_env;
  req.argv.insert(req.argv.end(), args.begin(), args.end());
  req.argv.push_back("--json");
  auto r = Run(req, run_for);
  if (!r) return std::unexpected(r.error());
  if (r->exit.timed_out) {
    return Fail(ErrorCode::kTimeout, "{}: hotpatch {} did not finish within {} ms", options_.name,
                subcommand, run_for.count());
  }
  if (r->exit.exited && r->exit.code == 127 && r->stdout_data.empty()) {
    return Fail(ErrorCode::kInfra, "{}: {} could not run in the guest: {}", options_.name,
                options_.hotpatch_path, r->stderr_data);
  }
  HotpatchResult out;
  out.exited = r->exit.exited;
  out.exit_code = r->exit.exited ? r->exit.code : 128 + r->exit.signal;
  out.stdout_data = std::move(r->stdout_data);
  out.stderr_data = std::move(r->stderr_data);
  out.json = internal::ParseHotpatchJson(out.stdout_data);
  return out;
}

Result<HotpatchResult> AgentClient::Apply(pid_t pid, const std::string& guest_package,
                                          milliseconds run_for) {
  return Hotpatch("apply", {"--pid", std::to_string(pid), guest_package}, run_for);
}
Result<HotpatchResult> AgentClient::Revert(pid_t pid, const std::string& patch_id,
                                           milliseconds run_for) {
  std::vector<std::string> args = {"--pid", std::to_string(pid)};
  if (!patch_id.empty()) args.push_back(patch_id);
  return Hotpatch("revert", std::move(args), run_for);
}
Result<HotpatchResult> AgentClient::PatchStatus(pid_t pid, milliseconds run_for) {
  return Hotpatch("status", {"--pid", std::to_string(pid)}, run_for);
}
Result<HotpatchResult> AgentClient::Verify(pid_t pid, milliseconds run_for) {
  return Hotpatch("verify", {"--pid", std::to_string(pid)}, run_for);
}

Result<SystemHotpatchResult> AgentClient::HotpatchSystem(const std::string& subcommand,
                                                         std::vector<std::string> args,
                                                         const SystemPatchRequest& request,
                                                         milliseconds run_for) {
  std::vector<std::string> flags = {"--system"};
  if (request.descendants_of) {
    flags.insert(flags.end(), {"--descendants-of", std::to_string(*request.descendants_of)});
  }
  if (request.jobs > 0) flags.insert(flags.end(), {"--jobs", std::to_string(request.jobs)});
  if (subcommand == "apply") {
    if (request.follow.count() > 0) {
      flags.insert(flags.end(), {"--follow", std::to_string(request.follow.count()) + "ms"});
    }
    if (request.all_or_nothing) flags.push_back("--all-or-nothing");
    if (!request.pubkey.empty()) flags.insert(flags.end(), {"--pubkey", request.pubkey});
    if (request.allow_unsigned) flags.push_back("--allow-unsigned");
  }
  args.insert(args.begin(), flags.begin(), flags.end());
  auto r = Hotpatch(subcommand, std::move(args), run_for);
  if (!r) return std::unexpected(r.error());
  // With no summary, hotpatch said why on stderr: a package it refused
  // (exit 3: a module no process maps, a bad signature), a patch live in no
  // process (exit 2).
  if (r->stdout_data.empty()) {
    const ErrorCode code = r->exit_code == 3 ? ErrorCode::kRefused : ErrorCode::kInvalidArgument;
    return Fail(code, "{}: hotpatch {} --system (exit {}): {}", options_.name, subcommand,
                r->exit_code, r->stderr_data.substr(0, 2000));
  }
  std::string line = r->stdout_data.substr(0, r->stdout_data.find('\n'));
  auto summary = ParseSystemPatchSummary(
      line,
      fmt::format("{}: hotpatch {} --system (exit {})", options_.name, subcommand, r->exit_code));
  if (!summary) {
    return Fail(ErrorCode::kParse, "{}; stderr: {}", summary.error().message(),
                r->stderr_data.substr(0, 2000));
  }
  return SystemHotpatchResult{std::move(*r), std::move(*summary)};
}

Result<SystemHotpatchResult> AgentClient::ApplySystem(const std::string& guest_package,
                                                      const SystemPatchRequest& request,
                                                      milliseconds run_for) {
  return HotpatchSystem("apply", {guest_package}, request, run_for);
}

Result<SystemHotpatchResult> AgentClient::RevertSystem(const std::string& patch_id,
                                                       const SystemPatchRequest& request,
                                                       milliseconds run_for) {
  return HotpatchSystem("revert", {patch_id}, request, run_for);
}

milliseconds AgentClient::SinceLastHeard() const {
  std::lock_guard lock(state_->mu);
  return std::chrono::duration_cast<milliseconds>(Clock::now() - state_->last_heard);
}
bool AgentClient::HeartbeatLost(milliseconds threshold) const {
  return SinceLastHeard() > threshold;
}
uint64_t AgentClient::heartbeats() const {
  std::lock_guard lock(state_->mu);
  return state_->heartbeats;
}
bool AgentClient::closed() const {
  std::lock_guard lock(state_->mu);
  return state_->closed;
}
std::string AgentClient::close_reason() const {
  std::lock_guard lock(state_->mu);
  return state_->close_reason;
}
std::vector<std::pair<pid_t, ExitStatus>> AgentClient::TakeExitEvents() {
  std::lock_guard lock(state_->mu);
  return std::exchange(state_->exits, {});
}
std::vector<std::string> AgentClient::garbage_lines() const {
  std::lock_guard lock(state_->mu);
  return {state_->garbage.begin(), state_->garbage.end()};
}

}  // namespace patchlab::harness
