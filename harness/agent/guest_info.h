// What the agent reads from the guest's /proc and /dev/kmsg: identity for
// hello, per-process samples, and the kernel log. Linux-only, no state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace patchlab::agent {

// hello's fields. Never fails: unknown values are empty.
nlohmann::json ReadHello();

// sample's fields for `pid`. Returns false (with `error`) when the process is gone.
bool ReadSample(pid_t pid, nlohmann::json* out, std::string* error);

// Kernel log records with sequence number > `since`, from `kmsg_path`
// (/dev/kmsg), and the last sequence number seen in `mark`. With `lines` null
// only the mark is computed. Returns false (with `error`) if the log cannot be read.
bool ReadKernelLog(const std::string& kmsg_path, uint64_t since, nlohmann::json* lines,
                   uint64_t* mark, std::string* error);

double UptimeSeconds();

}  // namespace patchlab::agent
