// The reference image recipes reader (vm-images/images.yaml,
// harness/vm/image_store.h). What it accepts has named, distinct recipes;
// every refusal names the file.
#include <set>
#include <string>

#include "fuzz/fuzz_target.h"
#include "harness/vm/image_store.h"

PATCHLAB_FUZZ_TARGET(images) {
  auto recipes = patchlab::harness::ParseImageRecipes(
      std::string(patchlab::fuzz::AsText(data, size)), "fuzz-images.yaml");
  if (!recipes) {
    FUZZ_CHECK(recipes.error().ToString().find("fuzz-images.yaml") != std::string::npos);
    return 0;
  }
  FUZZ_CHECK(!recipes->empty());
  std::set<std::string> names;
  for (const auto& r : *recipes) FUZZ_CHECK(names.insert(r.name).second && !r.cpus.empty());
  return 0;
}
