// C++ names for FindFunctionByName: an overload set, a unique member, a
// template, an operator and a C function, in a namespace and out of one.
#include <string>
#include <vector>

namespace shop {
struct Pricer {
  int Quote(const std::string& item) const;
  int Quote(int units) const;
  static double Mid(const std::vector<int>& v, char** labels);
  int operator()(int x);
};
int Pricer::Quote(const std::string& item) const { return static_cast<int>(item.size()); }
int Pricer::Quote(int units) const { return units * 3; }
double Pricer::Mid(const std::vector<int>& v, char**) { return static_cast<double>(v.size()); }
int Pricer::operator()(int x) { return x + 1; }

template <typename T>
T Pick(const T* values, unsigned long n) {
  return n == 0 ? T() : values[n - 1];
}
template long Pick<long>(const long*, unsigned long);
}  // namespace shop

extern "C" int plain_c_function(int x) { return x * 2; }
