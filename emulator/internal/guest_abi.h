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

#include <sys/syscall.h>
