// RemotePtr: an address in another process (the tracee). Kept apart from host
// pointers and plain integers so the two are never mixed up.
// Thread-safety: a value type.
#pragma once

#include <fmt/format.h>

#include <cstdint>

namespace patchlab::patchcore {

class RemotePtr {
 public:
  constexpr RemotePtr() = default;
  constexpr explicit RemotePtr(uint64_t addr) : addr_(addr) {}

  constexpr uint64_t addr() const { return addr_; }
  constexpr bool is_null() const { return addr_ == 0; }

  constexpr RemotePtr operator+(int64_t delta) const {
    return RemotePtr(addr_ + static_cast<uint64_t>(delta));
  }
  constexpr RemotePtr operator-(int64_t delta) const {
    return RemotePtr(addr_ - static_cast<uint64_t>(delta));
  }
  constexpr int64_t operator-(RemotePtr other) const {
    return static_cast<int64_t>(addr_ - other.addr_);
  }
  constexpr auto operator<=>(const RemotePtr&) const = default;

 private:
  uint64_t addr_ = 0;
};

// A half-open remote range [start, end).
struct RemoteRange {
  RemotePtr start;
  RemotePtr end;
  constexpr bool Contains(RemotePtr p) const { return p >= start && p < end; }
  constexpr uint64_t size() const { return end.addr() - start.addr(); }
};

}  // namespace patchlab::patchcore

template <>
struct fmt::formatter<patchlab::patchcore::RemotePtr> : fmt::formatter<std::string_view> {
  auto format(patchlab::patchcore::RemotePtr p, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{:#x}", p.addr());
  }
};
