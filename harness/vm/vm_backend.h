// VmBackend and Vm: how the lab boots a reference image and talks to it,
// independent of what runs the VM (QEMU directly, libvirt).
//
// A backend boots an image (kernel + initramfs, see image_store.h) with a VmSpec
// and returns a Vm once the guest agent is ready on its channel. It can save that
// ready state once (SaveReady) and start further VMs from it (RestoreReady),
// which is much faster than booting.
//
// Every Vm keeps its artefacts in spec.artefacts_dir: console.log (the guest's
// first serial port: kernel messages and /init output), agent.log (every line on
// the agent channel), and the backend's own log (qemu.log). They are kept after
// the Vm is gone; the runner copies kernel.log beside them from the agent.
//
// Errors: anything that keeps a VM from booting or running (QEMU missing or
// dying, a socket that never appears, an agent that never says ready, a restore
// file that does not match) fails with ErrorCode::kInfra: an infrastructure
// failure, never a patch failure. Crashes inside a running guest are not errors
// of these calls: they are VmEvents, classified by crash_classifier.h.
//
// Thread-safety: a Vm may be used from several threads (its AgentClient is
// thread-safe; Events/WaitForEvent/Kill are internally locked). A backend's
// Boot/RestoreReady may be called concurrently for parallel VMs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "harness/vm/agent_client.h"

namespace patchlab::harness {

// A bootable image: what ImageStore::Build returns.
struct VmImage {
  std::string name;                      // recipe name, e.g. "debian12-cloud"
  std::string kernel_release;            // e.g. "6.1.0-56-cloud-amd64"
  std::filesystem::path kernel;          // bzImage (vmlinuz)
  std::filesystem::path initrd;          // newc cpio (base, or base + overlay)
  std::vector<std::string> kernel_args;  // the recipe's command line (console, loglevel...)
  std::vector<std::string> cpus;         // the recipe's default CPU models
  std::string content_hash;              // identifies kernel + initrd content
  // Set: a read-only root disk (raw ext4) the initramfs mounts under a tmpfs
  // overlay; every VM of the image, restored ones too, attaches this file.
  std::filesystem::path root_disk;
};

struct VmSpec {
  std::string cpu_model = "qemu64";  // QEMU -cpu MODEL
  int smp = 1;
  int memory_mib = 512;
  std::vector<std::string> extra_kernel_args;
  // Where this VM's logs go; created if absent. Must be distinct per VM.
  std::filesystem::path artefacts_dir;
  std::string name = "vm";  // for messages and logs
  // Ask for guest time that counts executed instructions (QEMU's -icount under
  // TCG, with one vCPU: QEMU 7.2 hangs at SMP bring-up under icount), so the
  // guest's CPU time measures work, not the host's load. A backend that cannot
  // (KVM, libvirt) ignores it; Vm::CountsInstructions says what it got.
  bool count_instructions = false;
  std::chrono::milliseconds boot_timeout{120000};  // QEMU start to agent ready
};

enum class Accelerator { kKvm, kTcg };
std::string_view AcceleratorName(Accelerator accel);  // "kvm", "tcg"

enum class VmEventKind {
  kGuestPanicked,  // the guest kernel panicked (pvpanic / libvirt crash event)
  kVmExited,       // the VM process ended (killed, crashed, or the guest powered off)
  kAgentGone,      // the agent channel closed while the VM process still ran
  kHeartbeatLost,  // no line from the agent for longer than the threshold
};
std::string_view VmEventKindName(VmEventKind kind);

struct VmEvent {
  VmEventKind kind;
  std::string detail;  // "GUEST_PANICKED action=pause", "qemu exit 1", "no heartbeat for 5.0 s"
  std::chrono::steady_clock::time_point when;
};

class Vm {
 public:
  virtual ~Vm() = default;  // kills the VM if it still runs; artefacts stay

  virtual AgentClient& agent() = 0;
  virtual const VmSpec& spec() const = 0;
  virtual const VmImage& image() const = 0;
  virtual Accelerator accelerator() const = 0;
  virtual std::filesystem::path console_log_path() const = 0;
  virtual std::filesystem::path agent_log_path() const = 0;
  // "qemu pid 1234, debian12-cloud, Nehalem x2, tcg"
  virtual std::string Describe() const = 0;
  // Whether guest time counts executed instructions (VmSpec::count_instructions honoured).
  virtual bool CountsInstructions() const { return false; }

  // Checks every crash source now (VM process, panic events, agent channel,
  // heartbeat older than `heartbeat_threshold`) and returns the events not
  // returned before, oldest first. Never blocks for long.
  virtual std::vector<VmEvent> PollEvents(std::chrono::milliseconds heartbeat_threshold) = 0;
  // Waits up to `timeout` for the next event; nullopt when none came.
  virtual std::optional<VmEvent> WaitForEvent(std::chrono::milliseconds timeout,
                                              std::chrono::milliseconds heartbeat_threshold) = 0;
  virtual bool Running() = 0;

  // Ends the VM: asks the backend to quit it, and kills it if that does not
  // work within `grace`. Succeeds once the VM process is gone.
  virtual Status Shutdown(std::chrono::milliseconds grace) = 0;
  // Kills the VM process now (SIGKILL) and reaps it.
  virtual void Kill() = 0;
  // Pauses the whole VM (all vCPUs), e.g. to simulate a hung host. Cont resumes.
  virtual Status Pause() = 0;
  virtual Status Cont() = 0;
};

// A saved ready state: a VM whose agent was ready, frozen to a file.
struct ReadyState {
  std::string backend;         // which backend made it
  std::filesystem::path file;  // the saved state; may be shared by parallel restores
  VmImage image;
  VmSpec spec;  // cpu/smp/memory of the saved VM; restores must match
};

class VmBackend {
 public:
  virtual ~VmBackend() = default;
  virtual std::string_view Name() const = 0;  // "qemu", "libvirt"

  // Boots `image` and waits for the agent's ready line. kInfra on any failure,
  // with the console log's tail in the message; the artefacts stay for a post-mortem.
  virtual Result<std::unique_ptr<Vm>> Boot(const VmImage& image, const VmSpec& spec) = 0;

  // Saves `vm`'s state to `file` (replacing it). `vm` must have a ready agent and
  // no workload running. The VM keeps running afterwards.
  virtual Result<ReadyState> SaveReady(Vm& vm, const std::filesystem::path& file) = 0;

  // Starts a VM from a saved state and waits until its agent answers. `spec` gives
  // the new VM's name and artefacts dir; cpu_model, smp and memory_mib must equal
  // the saved ones (kInvalidArgument otherwise).
  virtual Result<std::unique_ptr<Vm>> RestoreReady(const ReadyState& state, const VmSpec& spec) = 0;
};

}  // namespace patchlab::harness
