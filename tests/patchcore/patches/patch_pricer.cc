// The replacement for pricer.cc's `long Pricer::Quote(std::string const&)
// const`, named by its C++ name too (pricer_fix::QuoteSku): a member
// function takes `this` as its first argument, so a free function with the
// object's layout first is call-compatible.
#include <string>

namespace pricer_fix {

struct PricerLayout {
  long base;
};

long QuoteSku(const PricerLayout* self, const std::string& sku) {
  return self->base + 1000 + static_cast<long>(sku.size());
}

}  // namespace pricer_fix
