// Error: what went wrong, as a value. Every failure the environment can cause
// (a missing file, a vanished pid, a full disk, a malformed input) is returned
// as Result<T> = std::expected<T, Error>; bugs abort instead.
//
// An Error carries a code (what kind of failure, which callers branch on), a
// message (for people), the errno when a system call failed, and a chain of
// context strings added as it travels up ("reading patch.hpk", "pid 1234").
//
// Thread-safety: a value type; distinct objects may be used from any thread.
#pragma once

#include <fmt/format.h>

#include <cerrno>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace patchlab {

enum class ErrorCode {
  kInvalidArgument,  // usage error or malformed input
  kNotFound,         // file, symbol, pid, row that does not exist
  kIo,               // a system call failed
  kParse,            // a document (YAML, JSON, ELF) is malformed
  kRefused,          // a safety rule said no before anything changed
  kRolledBack,       // failed part-way; every change was undone
  kTargetGone,       // the process being worked on vanished
  kTimeout,          // a deadline passed
  kUnsupported,      // valid input that this build cannot handle
  kInfra,            // the lab's own machinery (VM, daemon) failed
  kInternal,         // should not happen; a bug, but reported, not aborted
};

std::string_view ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message, int sys_errno = 0)
      : code_(code), message_(std::move(message)), sys_errno_(sys_errno) {}

  // An Error for a failed system call: `what` names the call and its object,
  // e.g. "open /tmp/x". The message gets strerror(err).
  static Error FromErrno(std::string_view what, int err = errno);

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return sys_errno_; }
  const std::vector<std::string>& context() const { return context_; }

  // Adds an outer context ("while loading patch.hpk"); returns *this for chaining.
  Error& AddContext(std::string context) &;
  Error&& AddContext(std::string context) &&;

  // "outer: inner: message" — the whole chain, outermost first.
  std::string ToString() const;

 private:
  ErrorCode code_;
  std::string message_;
  int sys_errno_;
  std::vector<std::string> context_;  // innermost first
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

// Shorthand for `return std::unexpected(Error(code, fmt::format(...)))`.
template <typename... Args>
std::unexpected<Error> Fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  return std::unexpected(Error(code, fmt::format(format, std::forward<Args>(args)...)));
}

// Shorthand for a failed system call, reading errno now.
inline std::unexpected<Error> FailErrno(std::string_view what, int err = errno) {
  return std::unexpected(Error::FromErrno(what, err));
}

// Adds context to the error of a failed Result, passing successes through.
template <typename T>
Result<T> WithContext(Result<T> result, std::string context) {
  if (!result) result.error().AddContext(std::move(context));
  return result;
}

}  // namespace patchlab

template <>
struct fmt::formatter<patchlab::Error> : fmt::formatter<std::string> {
  auto format(const patchlab::Error& e, format_context& ctx) const {
    return fmt::formatter<std::string>::format(e.ToString(), ctx);
  }
};
