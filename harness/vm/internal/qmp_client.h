// QmpClient: QEMU's machine protocol (QMP) over its unix socket: the greeting,
// capabilities negotiation, commands with replies matched by id, and events
// (GUEST_PANICKED, SHUTDOWN, STOP, RESUME...) kept for the VM to poll.
//
// Thread-safety: thread-safe. A reader thread owns the socket's read side.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/scoped_fd.h"

namespace patchlab::harness::internal {

struct QmpEvent {
  std::string name;     // "GUEST_PANICKED"
  nlohmann::json data;  // the event's "data"
};

// One line from QEMU's monitor, classified. QEMU is trusted more than a guest,
// but its socket is read as outside input: nothing here throws or aborts.
struct QmpMessage {
  enum class Kind { kGreeting, kEvent, kReply };
  Kind kind = Kind::kReply;
  uint64_t id = 0;       // kReply: the id of the command it answers
  QmpEvent event;        // kEvent
  nlohmann::json reply;  // kReply: the whole message
};
// nullopt for a line that is not a QMP message (not a JSON object, an event
// whose name is not a string, a reply without an unsigned id).
std::optional<QmpMessage> ParseQmpLine(std::string_view line);
// What a reply to `command` returns: its "return" value ({} when absent), or
// kInfra with QEMU's description when it is an error reply.
Result<nlohmann::json> QmpReplyValue(std::string_view command, const nlohmann::json& reply);

class QmpClient {
 public:
  // Connects (retrying while QEMU starts, up to `timeout`), reads the greeting
  // and negotiates capabilities. kTimeout / kInfra naming the socket.
  static Result<std::unique_ptr<QmpClient>> Connect(const std::filesystem::path& socket,
                                                    std::chrono::milliseconds timeout);
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Runs a command; returns its "return" value. kInfra with QEMU's description
  // on an error reply or a closed socket; kTimeout when no reply came.
  Result<nlohmann::json> Execute(const std::string& command, nlohmann::json arguments = nullptr,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // "running", "paused", "inmigrate", "postmigrate", "guest-panicked", ...
  Result<std::string> QueryStatus();

  // Events received since the last call, oldest first.
  std::vector<QmpEvent> TakeEvents();
  bool closed() const;

 private:
  struct State;
  explicit QmpClient(ScopedFd fd);
  void ReaderLoop();
  std::unique_ptr<State> state_;
};

}  // namespace patchlab::harness::internal
