// The guest's Linux ABI is the host's: the checker runs x86-64 guest code
// on an x86-64 host, so the system call numbers of <sys/syscall.h>
// (SYS_open, SYS_newfstatat, ...) and the flags and values of the other
// system headers the SyscallLayer's files include (<fcntl.h>, <sys/mman.h>,
// <csignal>, ...) are the ones the guest passes. On another host they would
// be another architecture's, so the build stops there.
#pragma once

#if !defined(__x86_64__) || defined(__ILP32__)
#error \
    "the SyscallLayer models x86-64 Linux with the host's system headers: build on an x86-64 host"
#endif

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <cstdint>
#include <cstring>

namespace patchlab::emulator::internal {

// The guest's struct stat and struct statfs are the host's (x86-64: 144 and
// 120 bytes): filled by field name, copied out whole.
static_assert(sizeof(struct stat) == 144 && sizeof(struct statfs) == 120);
// statfs's f_flags bit saying the flags are valid, which glibc does not name.
constexpr unsigned long kStValid = 0x20;

template <typename T>
void CopyOut(const T& value, uint8_t* guest) {
  std::memcpy(guest, &value, sizeof value);
}

}  // namespace patchlab::emulator::internal
