#include "emulator/outcome.h"

#include <fmt/format.h>

namespace patchlab::emulator {

std::string_view EndingName(Ending e) {
  switch (e) {
    case Ending::kReturned:
      return "returned";
    case Ending::kFault:
      return "fault";
    case Ending::kHang:
      return "hang";
    case Ending::kInconclusive:
      return "inconclusive";
  }
  return "?";
}

std::string_view FaultClassName(FaultClass f) {
  switch (f) {
    case FaultClass::kNone:
      return "none";
    case FaultClass::kReadUnmapped:
      return "read-unmapped";
    case FaultClass::kWriteUnmapped:
      return "write-unmapped";
    case FaultClass::kFetchUnmapped:
      return "fetch-unmapped";
    case FaultClass::kWriteProtected:
      return "write-protected";
    case FaultClass::kFetchProtected:
      return "fetch-protected";
    case FaultClass::kInvalidInstruction:
      return "invalid-instruction";
    case FaultClass::kDivideByZero:
      return "divide-by-zero";
    case FaultClass::kTrap:
      return "trap";
    case FaultClass::kAbort:
      return "abort";
    case FaultClass::kStackSmash:
      return "stack-smash";
    case FaultClass::kBadFree:
      return "bad-free";
    case FaultClass::kPrivileged:
      return "privileged-instruction";
  }
  return "?";
}

std::string StubCall::ToString() const {
  std::string a;
  for (uint64_t v : args) a += fmt::format("{}{:#x}", a.empty() ? "" : ", ", v);
  if (!data.empty()) {
    constexpr size_t kShown = 64;
    std::string shown;
    for (size_t i = 0; i < data.size() && i < kShown; ++i) {
      const auto c = static_cast<unsigned char>(data[i]);
      if (c == '"' || c == '\\')
        shown += fmt::format("\\{}", static_cast<char>(c));
      else if (c >= 0x20 && c < 0x7f)
        shown += static_cast<char>(c);
      else
        shown += fmt::format("\\x{:02x}", c);
    }
    a += fmt::format(", \"{}\"{}", shown, data.size() > kShown ? "..." : "");
  }
  return fmt::format("{}({}) = {:#x}", name, a, ret);
}

std::string DescribeOutcome(const RunOutcome& o) {
  switch (o.ending) {
    case Ending::kReturned:
      return fmt::format("returned {:#x}", o.ret);
    case Ending::kHang:
      return fmt::format("hang (over {} basic blocks)", o.blocks);
    case Ending::kInconclusive:
      return "inconclusive: " + o.where;
    case Ending::kFault: {
      std::string s = fmt::format("fault {} at {:#x}", FaultClassName(o.fault), o.fault_addr);
      if (!o.where.empty()) s += " " + o.where;
      if (o.fault_pc != 0)
        s += fmt::format(" (pc {:#x}{})", o.fault_pc, o.fault_pc_exact ? "" : ", block start");
      return s;
    }
  }
  return "?";
}

}  // namespace patchlab::emulator
