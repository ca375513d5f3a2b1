// A small C++ service for patching a member function by its C++ name: a
// Pricer with an overload set Quote(std::string const&) / Quote(long).
// Every 10 ms it prints
//   tick calls=N sku=S units=U
// sku=103 and units=200 with the original code; patch_pricer.cc's
// Quote(std::string const&) answers 1103, and Quote(long) is never patched.
#include <unistd.h>

#include <cstdio>
#include <string>

class Pricer {
 public:
  explicit Pricer(long base) : base_(base) {}
  long Quote(const std::string& sku) const;
  long Quote(long units) const;

 private:
  long base_;
};

// noipa: the calls must stay calls, as in a real service.
__attribute__((noipa)) long Pricer::Quote(const std::string& sku) const {
  return base_ + static_cast<long>(sku.size());
}
__attribute__((noipa)) long Pricer::Quote(long units) const { return base_ * units; }

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const Pricer pricer(100);
  const std::string sku = "abc";
  for (long calls = 1;; ++calls) {
    std::printf("tick calls=%ld sku=%ld units=%ld\n", calls, pricer.Quote(sku), pricer.Quote(2L));
    usleep(10000);
  }
}
