#include "base/error.h"

#include <cstring>

namespace patchlab {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid-argument";
    case ErrorCode::kNotFound:
      return "not-found";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kParse:
      return "parse";
    case ErrorCode::kRefused:
      return "refused";
    case ErrorCode::kRolledBack:
      return "rolled-back";
    case ErrorCode::kTargetGone:
      return "target-gone";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kInfra:
      return "infra";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

Error Error::FromErrno(std::string_view what, int err) {
  // ESRCH from ptrace or /proc means the process is gone; callers map that to
  // the "target vanished" exit code, so classify it here once.
  ErrorCode code = ErrorCode::kIo;
  if (err == ENOENT) code = ErrorCode::kNotFound;
  if (err == ESRCH) code = ErrorCode::kTargetGone;
  if (err == ETIMEDOUT) code = ErrorCode::kTimeout;
  return Error(code, fmt::format("{}: {}", what, std::strerror(err)), err);
}

Error& Error::AddContext(std::string context) & {
  context_.push_back(std::move(context));
  return *this;
}

Error&& Error::AddContext(std::string context) && {
  context_.push_back(std::move(context));
  return std::move(*this);
}

std::string Error::ToString() const {
  std::string out;
  for (auto it = context_.rbegin(); it != context_.rend(); ++it) {
    out += *it;
    out += ": ";
  }
  out += message_;
  return out;
}

}  // namespace patchlab
