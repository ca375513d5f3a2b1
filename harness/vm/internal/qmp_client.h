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
#include <string>
#include <vector>

#include "base/error.h"
#include "base/scoped_fd.h"

namespace patchlab::harness::internal {

struct QmpEvent {
  std::string name;     // "GUEST_PANICKED"
  nlohmann::json data;  // the event's "data"
};

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
