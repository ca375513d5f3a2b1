#include "harness/libvirt/transient_domain.h"

#include <fmt/format.h>

#include <condition_variable>
#include <deque>
#include <mutex>

#include "base/log.h"
#include "harness/libvirt/internal/virt_ptr.h"

namespace patchlab::harness {

using libvirt_internal::FailVirt;
using libvirt_internal::LastVirErrorCode;
using libvirt_internal::TakeString;
using Clock = std::chrono::steady_clock;

struct TransientDomain::Events {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<DomainEvent> queue;
};

namespace {

std::string StoppedDetail(int detail) {
  switch (detail) {
    case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
      return "shutdown";
    case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
      return "destroyed";
    case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
      return "crashed";
    case VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
      return "migrated";
    case VIR_DOMAIN_EVENT_STOPPED_SAVED:
      return "saved";
    case VIR_DOMAIN_EVENT_STOPPED_FAILED:
      return "failed";
    default:
      return fmt::format("detail {}", detail);
  }
}

std::string SuspendedDetail(int detail) {
  switch (detail) {
    case VIR_DOMAIN_EVENT_SUSPENDED_PAUSED:
      return "paused";
    case VIR_DOMAIN_EVENT_SUSPENDED_IOERROR:
      return "io-error";
    case VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG:
      return "watchdog";
    case VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR:
      return "api-error";
    default:
      return fmt::format("detail {}", detail);
  }
}

DomainEvent Translate(int event, int detail) {
  DomainEvent e{DomainEventKind::kOther, "", Clock::now()};
  switch (event) {
    case VIR_DOMAIN_EVENT_STARTED:
      e.kind = DomainEventKind::kStarted;
      e.detail = detail == VIR_DOMAIN_EVENT_STARTED_RESTORED ? "started/restored" : "started";
      break;
    case VIR_DOMAIN_EVENT_SUSPENDED:
      e.kind = DomainEventKind::kSuspended;
      e.detail = "suspended/" + SuspendedDetail(detail);
      break;
    case VIR_DOMAIN_EVENT_RESUMED:
      e.kind = DomainEventKind::kResumed;
      e.detail = "resumed";
      break;
    case VIR_DOMAIN_EVENT_STOPPED:
      e.kind = DomainEventKind::kStopped;
      e.detail = "stopped/" + StoppedDetail(detail);
      break;
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      e.kind = DomainEventKind::kShutdown;
      e.detail = "shutdown";
      break;
    case VIR_DOMAIN_EVENT_CRASHED:
      e.kind = DomainEventKind::kCrashed;
      e.detail = detail == VIR_DOMAIN_EVENT_CRASHED_PANICKED ? "crashed/panicked"
                                                             : fmt::format("crashed/{}", detail);
      break;
    default:
      e.detail = fmt::format("event {} detail {}", event, detail);
  }
  return e;
}

// Runs on the event loop thread. `opaque` is a heap shared_ptr owned by the
// registration (freed by FreeEvents when it ends), so the queue outlives any
// callback in flight even if the TransientDomain is already gone.
int OnLifecycle(virConnectPtr, virDomainPtr, int event, int detail, void* opaque) {
  auto& events = *static_cast<std::shared_ptr<TransientDomain::Events>*>(opaque);
  {
    std::lock_guard lock(events->mu);
    events->queue.push_back(Translate(event, detail));
  }
  events->cv.notify_all();
  return 0;
}

void FreeEvents(void* opaque) {
  delete static_cast<std::shared_ptr<TransientDomain::Events>*>(opaque);
}

}  // namespace

std::string DomainStateName(int state) {
  switch (state) {
    case VIR_DOMAIN_NOSTATE:
      return "no-state";
    case VIR_DOMAIN_RUNNING:
      return "running";
    case VIR_DOMAIN_BLOCKED:
      return "blocked";
    case VIR_DOMAIN_PAUSED:
      return "paused";
    case VIR_DOMAIN_SHUTDOWN:
      return "shutting-down";
    case VIR_DOMAIN_SHUTOFF:
      return "shut-off";
    case VIR_DOMAIN_CRASHED:
      return "crashed";
    case VIR_DOMAIN_PMSUSPENDED:
      return "pm-suspended";
    default:
      return fmt::format("state {}", state);
  }
}

TransientDomain::TransientDomain(std::shared_ptr<LibvirtHost> host, virDomainPtr dom,
                                 std::string name)
    : host_(std::move(host)),
      dom_(dom),
      name_(std::move(name)),
      events_(std::make_shared<Events>()) {
  SubscribeEvents();
}

Result<std::unique_ptr<TransientDomain>> TransientDomain::Create(std::shared_ptr<LibvirtHost> host,
                                                                 const std::string& xml,
                                                                 const std::string& name,
                                                                 StartState start) {
  unsigned paused = start == StartState::kPaused ? VIR_DOMAIN_START_PAUSED : 0;
  bool suspend_after = false;
  virDomainPtr dom =
      virDomainCreateXML(host->conn(), xml.c_str(), VIR_DOMAIN_START_AUTODESTROY | paused);
  if (dom == nullptr && LastVirErrorCode() == VIR_ERR_INVALID_ARG) {
    // Drivers without autodestroy or paused starts (the test driver) reject
    // the flags; the destructor still destroys the domain on every exit path
    // of this process, and a suspend right after the start stands in for
    // the paused start.
    dom = virDomainCreateXML(host->conn(), xml.c_str(), 0);
    suspend_after = paused != 0;
  }
  if (dom == nullptr) {
    return FailVirt(ErrorCode::kInfra,
                    fmt::format("libvirt {} domain {}: creating", host->uri(), name));
  }
  std::unique_ptr<TransientDomain> domain(new TransientDomain(std::move(host), dom, name));
  if (suspend_after) {
    if (auto s = domain->Suspend(); !s) return std::unexpected(s.error());
  }
  return domain;
}

Result<std::unique_ptr<TransientDomain>> TransientDomain::Restore(std::shared_ptr<LibvirtHost> host,
                                                                  const std::string& file,
                                                                  const std::string& xml,
                                                                  const std::string& name,
                                                                  StartState start) {
  std::string where = fmt::format("libvirt {} domain {}", host->uri(), name);
  const char* dxml = xml.empty() ? nullptr : xml.c_str();
  unsigned flags = start == StartState::kPaused ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;
  bool suspend_after = false;
  int rc = virDomainRestoreFlags(host->conn(), file.c_str(), dxml, flags);
  if (rc < 0 && LastVirErrorCode() == VIR_ERR_INVALID_ARG) {
    // The test driver takes no flags; it restores running anyway.
    rc = virDomainRestoreFlags(host->conn(), file.c_str(), dxml, 0);
    suspend_after = start == StartState::kPaused;
  }
  if (rc < 0) {
    return FailVirt(ErrorCode::kInfra, fmt::format("{}: restoring from {}", where, file));
  }
  virDomainPtr dom = virDomainLookupByName(host->conn(), name.c_str());
  if (dom == nullptr) return FailVirt(ErrorCode::kInfra, where + ": restored, but not found");
  std::unique_ptr<TransientDomain> domain(new TransientDomain(std::move(host), dom, name));
  if (suspend_after) {
    if (auto s = domain->Suspend(); !s) return std::unexpected(s.error());
  }
  return domain;
}

TransientDomain::~TransientDomain() {
  if (auto s = Destroy(); !s) Log("libvirt")->warn("{}", s.error().ToString());
  UnsubscribeEvents();
  virDomainFree(dom_);
}

std::string TransientDomain::Where() const {
  return fmt::format("libvirt {} domain {}", host_->uri(), name_);
}

void TransientDomain::SubscribeEvents() {
  auto* opaque = new std::shared_ptr<Events>(events_);
  callback_id_ =
      virConnectDomainEventRegisterAny(host_->conn(), dom_, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                       VIR_DOMAIN_EVENT_CALLBACK(OnLifecycle), opaque, FreeEvents);
  if (callback_id_ < 0) {
    delete opaque;
    Log("libvirt")->warn("{}: no lifecycle events: {}", Where(), libvirt_internal::LastVirError());
  }
}

void TransientDomain::UnsubscribeEvents() {
  if (callback_id_ >= 0) virConnectDomainEventDeregisterAny(host_->conn(), callback_id_);
  callback_id_ = -1;
}

bool TransientDomain::Active() {
  if (gone_) return false;
  int active = virDomainIsActive(dom_);
  return active == 1;
}

Status TransientDomain::Destroy() {
  if (gone_) return {};
  if (virDomainDestroy(dom_) < 0) {
    int code = LastVirErrorCode();
    // Already stopped (and so gone, being transient): what we wanted.
    if (code != VIR_ERR_NO_DOMAIN && code != VIR_ERR_OPERATION_INVALID) {
      if (!host_->alive()) {
        gone_ = true;
        return Fail(
            ErrorCode::kInfra,
            "{}: host connection lost ({}); the daemon destroys its autodestroy domains itself",
            Where(), host_->close_reason());
      }
      return FailVirt(ErrorCode::kInfra, Where() + ": destroying");
    }
  }
  gone_ = true;
  return {};
}

Status TransientDomain::Suspend() {
  if (virDomainSuspend(dom_) < 0) return FailVirt(ErrorCode::kInfra, Where() + ": suspending");
  return {};
}

Status TransientDomain::Resume() {
  if (virDomainResume(dom_) < 0) return FailVirt(ErrorCode::kInfra, Where() + ": resuming");
  return {};
}

Status TransientDomain::SaveTo(const std::string& file) {
  // The save's own "stopped/saved" event is not news to the caller.
  UnsubscribeEvents();
  if (virDomainSave(dom_, file.c_str()) < 0) {
    auto failed = FailVirt(ErrorCode::kInfra, fmt::format("{}: saving to {}", Where(), file));
    SubscribeEvents();
    return failed;
  }
  gone_ = true;
  return {};
}

Result<DomainStats> TransientDomain::Stats() {
  DomainStats stats;
  virDomainInfo info{};
  if (virDomainGetInfo(dom_, &info) < 0)
    return FailVirt(ErrorCode::kInfra, Where() + ": reading info");
  stats.state = DomainStateName(info.state);
  stats.cpu_time_ns = info.cpuTime;
  stats.memory_kib = info.memory;
  virDomainMemoryStatStruct mem[VIR_DOMAIN_MEMORY_STAT_NR];
  int n = virDomainMemoryStats(dom_, mem, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  for (int i = 0; i < n; ++i) {
    if (mem[i].tag == VIR_DOMAIN_MEMORY_STAT_RSS) stats.rss_kib = mem[i].val;
  }
  // The total over all vCPUs: one record with cpu_time, user_time, system_time.
  int nparams = virDomainGetCPUStats(dom_, nullptr, 0, -1, 1, 0);
  if (nparams > 0) {
    std::vector<virTypedParameter> params(static_cast<size_t>(nparams));
    int got = virDomainGetCPUStats(dom_, params.data(), static_cast<unsigned>(nparams), -1, 1, 0);
    for (int i = 0; i < got; ++i) {
      std::string field = params[i].field;
      if (params[i].type != VIR_TYPED_PARAM_ULLONG) continue;
      if (field == VIR_DOMAIN_CPU_STATS_USERTIME) stats.user_time_ns = params[i].value.ul;
      if (field == VIR_DOMAIN_CPU_STATS_SYSTEMTIME) stats.system_time_ns = params[i].value.ul;
    }
    if (got > 0) virTypedParamsClear(params.data(), got);
  }
  return stats;
}

Result<std::string> TransientDomain::XmlDesc() {
  std::string xml = TakeString(virDomainGetXMLDesc(dom_, 0));
  if (xml.empty()) return FailVirt(ErrorCode::kInfra, Where() + ": reading its XML");
  return xml;
}

std::vector<DomainEvent> TransientDomain::TakeEvents() {
  std::lock_guard lock(events_->mu);
  std::vector<DomainEvent> out(events_->queue.begin(), events_->queue.end());
  events_->queue.clear();
  return out;
}

std::optional<DomainEvent> TransientDomain::WaitEvent(std::chrono::milliseconds timeout) {
  std::unique_lock lock(events_->mu);
  if (!events_->cv.wait_for(lock, timeout, [&] { return !events_->queue.empty(); }))
    return std::nullopt;
  DomainEvent e = events_->queue.front();
  events_->queue.pop_front();
  return e;
}

}  // namespace patchlab::harness
