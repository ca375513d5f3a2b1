// PrivateLibvirtd: a real libvirtd for integration tests and benchmarks that
// touches nothing global on the machine.
//
// The daemon runs in its own mount namespace where /etc/libvirt,
// /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt are
// folders under DIR, and /etc/passwd and /etc/group are copies that add the
// libvirt-qemu user and group when absent (libvirtd looks them up before it
// reads qemu.conf). Its qemu.conf runs QEMU as root with no security driver,
// no dynamic ownership and no virtlogd. It listens on DIR/sock/libvirt-sock
// only; uri() is the URI that reaches it. Several may run at once (each
// stands in for one host of a fleet).
//
// The daemon runs under a small child subreaper (PR_SET_CHILD_SUBREAPER, a
// waitpid loop) that reaps its daemonized QEMUs at once (PID 1 here reaps
// orphans only every ~2 s), and on Stop kills every QEMU left, as a host
// going down takes its VMs with it. The reaper stops the same way when the
// thread that called Start exits, so a killed test binary leaves no daemon
// behind (base/parent_death.h).
//
// Requires root (mount namespaces, QEMU as root); Start fails with
// kUnsupported otherwise, and tests skip.
//
// Thread-safety: one object belongs to one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "base/error.h"

namespace patchlab::testing {

class PrivateLibvirtd {
 public:
  // Starts a daemon with its state under `dir` (created) and waits until it
  // answers on its socket. Fails naming the daemon's log when it does not.
  static Result<std::unique_ptr<PrivateLibvirtd>> Start(
      const std::filesystem::path& dir,
      std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~PrivateLibvirtd();  // Stop()
  PrivateLibvirtd(const PrivateLibvirtd&) = delete;
  PrivateLibvirtd& operator=(const PrivateLibvirtd&) = delete;

  const std::string& uri() const { return uri_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path log_path() const { return dir_ / "libvirtd.log"; }

  // Stops the daemon and kills its QEMUs. Idempotent.
  void Stop();
  bool running() const { return reaper_ > 0; }

 private:
  PrivateLibvirtd() = default;
  std::filesystem::path dir_;
  std::string uri_;
  pid_t reaper_ = -1;
};

}  // namespace patchlab::testing
