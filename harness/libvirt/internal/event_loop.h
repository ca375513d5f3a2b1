// The process's libvirt event loop: libvirt's default implementation, run by
// one thread for the life of the process.
//
// Domain events, keepalive pings, stream events and close callbacks are only
// delivered while some thread runs virEventRunDefaultImpl, and the
// implementation must be registered before the first connection is opened.
// EnsureEventLoop does both, once; every connection the backend opens calls it
// first.
//
// It also silences libvirt's default error printer: errors reach people
// through our Error values, not libvirt's own lines on stderr.
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <functional>

#include "base/error.h"

namespace patchlab::harness::libvirt_internal {

// Registers libvirt's default event implementation and starts the loop thread.
// Fails (kInfra) only if libvirt refuses to initialize; the failure is sticky.
Status EnsureEventLoop();

// True on the loop thread (inside a libvirt callback).
bool OnEventLoopThread();

// Runs `fn` on the loop thread and returns once it ran, so that it never runs
// alongside a callback of the loop (they all run on that thread). Runs it at
// once when called on the loop thread. REQUIRES: EnsureEventLoop succeeded.
void RunOnEventLoop(const std::function<void()>& fn);

}  // namespace patchlab::harness::libvirt_internal
