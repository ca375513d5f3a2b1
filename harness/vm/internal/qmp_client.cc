#include "harness/vm/internal/qmp_client.h"

#include <sys/socket.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "base/json_util.h"
#include "base/log.h"
#include "harness/vm/internal/unix_socket.h"

namespace patchlab::harness::internal {
using nlohmann::json;

std::optional<QmpMessage> ParseQmpLine(std::string_view line) {
  // ParseJson bounds the nesting, so that dumping an error for a message stays shallow.
  auto parsed = ParseJson(line, "QMP");
  if (!parsed || !parsed->is_object()) return std::nullopt;
  json& msg = *parsed;
  QmpMessage out;
  if (msg.contains("QMP")) {
    out.kind = QmpMessage::Kind::kGreeting;
  } else if (auto event = msg.find("event"); event != msg.end()) {
    if (!event->is_string()) return std::nullopt;
    out.kind = QmpMessage::Kind::kEvent;
    out.event.name = event->get<std::string>();
    auto data = msg.find("data");
    out.event.data = data == msg.end() ? json::object() : std::move(*data);
  } else if (auto id = msg.find("id"); id != msg.end() && id->is_number_unsigned()) {
    out.kind = QmpMessage::Kind::kReply;
    out.id = id->get<uint64_t>();
    out.reply = std::move(msg);
  } else {
    return std::nullopt;
  }
  return out;
}

Result<json> QmpReplyValue(std::string_view command, const json& reply) {
  if (auto error = reply.find("error"); error != reply.end()) {
    // QEMU's errors are {"class": ..., "desc": ...}; anything else is shown whole.
    auto desc = error->is_object() ? error->find("desc") : error->end();
    bool has_desc = error->is_object() && desc != error->end() && desc->is_string();
    return Fail(ErrorCode::kInfra, "QMP {}: {}", command,
                has_desc ? desc->get<std::string>() : error->dump());
  }
  auto value = reply.find("return");
  return value == reply.end() ? json::object() : *value;
}

struct QmpClient::State {
  ScopedFd fd;
  std::thread reader;
  mutable std::mutex mu;
  std::condition_variable cv;
  bool greeted = false;
  bool closed = false;
  uint64_t next_id = 1;
  std::map<uint64_t, std::optional<json>> replies;  // id -> reply once it came
  std::vector<QmpEvent> events;
  std::mutex write_mu;
};

QmpClient::QmpClient(ScopedFd fd) : state_(std::make_unique<State>()) {
  state_->fd = std::move(fd);
  state_->reader = std::thread([this] { ReaderLoop(); });
}

QmpClient::~QmpClient() {
  ::shutdown(state_->fd.get(), SHUT_RDWR);
  if (state_->reader.joinable()) state_->reader.join();
}

Result<std::unique_ptr<QmpClient>> QmpClient::Connect(const std::filesystem::path& socket,
                                                      std::chrono::milliseconds timeout) {
  auto fd = ConnectUnix(socket, timeout);
  if (!fd) return std::unexpected(std::move(fd.error()).AddContext("QMP"));
  std::unique_ptr<QmpClient> client(new QmpClient(std::move(*fd)));
  {
    std::unique_lock lock(client->state_->mu);
    client->state_->cv.wait_for(lock, timeout,
                                [&] { return client->state_->greeted || client->state_->closed; });
    if (!client->state_->greeted) {
      return Fail(ErrorCode::kInfra, "QMP {}: no greeting from QEMU within {} ms", socket.string(),
                  timeout.count());
    }
  }
  auto caps = client->Execute("qmp_capabilities", nullptr, timeout);
  if (!caps) return std::unexpected(std::move(caps.error()).AddContext("QMP " + socket.string()));
  return client;
}

void QmpClient::ReaderLoop() {
  LineSplitter splitter(1 << 20);
  std::string buf(65536, '\0');
  while (true) {
    ssize_t n = ::read(state_->fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bool overlong = false;
    for (const std::string& line :
         splitter.Feed(std::string_view(buf.data(), static_cast<size_t>(n)), &overlong)) {
      std::optional<QmpMessage> msg = ParseQmpLine(line);
      if (!msg) continue;
      std::lock_guard lock(state_->mu);
      switch (msg->kind) {
        case QmpMessage::Kind::kGreeting:
          state_->greeted = true;
          break;
        case QmpMessage::Kind::kEvent:
          Log("harness")->debug("QMP event {}", msg->event.name);
          state_->events.push_back(std::move(msg->event));
          break;
        case QmpMessage::Kind::kReply:
          if (auto it = state_->replies.find(msg->id); it != state_->replies.end()) {
            it->second = std::move(msg->reply);
          }
          break;
      }
      state_->cv.notify_all();
    }
  }
  std::lock_guard lock(state_->mu);
  state_->closed = true;
  state_->cv.notify_all();
}

Result<json> QmpClient::Execute(const std::string& command, json arguments,
                                std::chrono::milliseconds timeout) {
  uint64_t id;
  {
    std::lock_guard lock(state_->mu);
    if (state_->closed)
      return Fail(ErrorCode::kInfra, "QMP {}: QEMU closed its monitor (process gone?)", command);
    id = state_->next_id++;
    state_->replies[id] = std::nullopt;
  }
  json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = std::move(arguments);
  Status written;
  {
    std::lock_guard lock(state_->write_mu);
    written = WriteAll(state_->fd.get(), request.dump() + "\n", "QMP");
  }
  std::unique_lock lock(state_->mu);
  if (!written) {
    state_->replies.erase(id);
    return Fail(ErrorCode::kInfra, "QMP {}: {}", command, written.error().ToString());
  }
  state_->cv.wait_for(lock, timeout,
                      [&] { return state_->replies[id].has_value() || state_->closed; });
  std::optional<json> reply = std::move(state_->replies[id]);
  state_->replies.erase(id);
  if (!reply) {
    if (state_->closed)
      return Fail(ErrorCode::kInfra, "QMP {}: QEMU closed its monitor before replying", command);
    return Fail(ErrorCode::kTimeout, "QMP {}: no reply within {} ms", command, timeout.count());
  }
  return QmpReplyValue(command, *reply);
}

Result<std::string> QmpClient::QueryStatus() {
  auto r = Execute("query-status");
  if (!r) return std::unexpected(r.error());
  auto status = r->find("status");
  if (status == r->end() || !status->is_string()) return std::string("unknown");
  return status->get<std::string>();
}

std::vector<QmpEvent> QmpClient::TakeEvents() {
  std::lock_guard lock(state_->mu);
  return std::exchange(state_->events, {});
}

bool QmpClient::closed() const {
  std::lock_guard lock(state_->mu);
  return state_->closed;
}

}  // namespace patchlab::harness::internal
