// The process's libvirt event loop: libvirt's default implementation, run by
// one thread for the life of the process.
//
// Domain events, keepalive pings and close callbacks are only delivered while
// some thread runs virEventRunDefaultImpl, and the implementation must be
// registered before the first connection is opened. EnsureEventLoop does
// both, once; every connection the backend opens calls it first.
//
// It also silences libvirt's default error printer: errors reach people
// through our Error values, not libvirt's own lines on stderr.
//
// Thread-safety: EnsureEventLoop may be called from any thread, any number of
// times; the first call starts the loop.
#pragma once

#include "base/error.h"

namespace patchlab::harness::libvirt_internal {

// Registers libvirt's default event implementation and starts the loop thread.
// Fails (kInfra) only if libvirt refuses to initialize; the failure is sticky.
Status EnsureEventLoop();

}  // namespace patchlab::harness::libvirt_internal
