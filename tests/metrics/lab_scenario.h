// A small, fast scenario for the tests that drive the real `patchlab run
// --backend host`: the bundled pricer service (scenarios/bad-crash) with a
// patch whose behaviour the test chooses, short windows and as many workloads
// (matrix cells) as asked. The sources are copied into a scratch folder so a
// test can change the patch between two runs under the same ids.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/file_util.h"

namespace patchlab::metrics::testing {

enum class PricerPatch {
  kGood,    // the original formula: the service keeps running
  kCrash,   // scenarios/bad-crash's table lookup: SIGSEGV under real traffic
  kBroken,  // does not compile: the lab must stop before recording anything
};

// Writes DIR/common/labstats.h and DIR/pricer/{scenario.yaml,pricer.c,price_table.c};
// returns DIR/pricer. Patch id "pricer-table", one cell per workload name.
inline std::filesystem::path WritePricerScenario(const std::filesystem::path& dir,
                                                 PricerPatch patch,
                                                 const std::vector<std::string>& workloads = {
                                                     "steady"}) {
  namespace fs = std::filesystem;
  const fs::path source = PATCHLAB_SOURCE_DIR "/scenarios";
  fs::path folder = dir / "pricer";
  fs::create_directories(folder);
  fs::create_directories(dir / "common");
  fs::copy_file(source / "common/labstats.h", dir / "common/labstats.h",
                fs::copy_options::overwrite_existing);
  fs::copy_file(source / "bad-crash/pricer.c", folder / "pricer.c",
                fs::copy_options::overwrite_existing);
  std::string table;
  switch (patch) {
    case PricerPatch::kGood:
      table =
          "#include <stdint.h>\n"
          "uint64_t price_item(uint32_t sku, uint32_t qty) {\n"
          "  uint64_t unit = 100 + (sku % 9000);\n"
          "  uint64_t discount = qty / 10 > 30 ? 30 : qty / 10;\n"
          "  return unit * qty * (100 - discount) / 100;\n"
          "}\n";
      break;
    case PricerPatch::kCrash: {
      auto bad = ReadFile(source / "bad-crash/price_table.c");
      EXPECT_TRUE(bad.has_value());
      table = bad.value_or("");
      break;
    }
    case PricerPatch::kBroken:
      table = "uint64_t price_item(uint32_t sku) { return sku +; }\n";
      break;
  }
  EXPECT_TRUE(WriteFileAtomic(folder / "price_table.c", table).has_value());
  // Short windows and the smallest pair budget that can resolve a figure: the
  // tests are about what the lab records, not about the figures. A figure
  // the shared test machine makes noisy is recorded as noisy, failing nothing.
  std::string yaml =
      "name: pricer\n"
      "timeout: 60s\n"
      "target:\n"
      "  program: pricer\n"
      "  sources: [pricer.c]\n"
      "  cflags: [-I../common]\n"
      "patch:\n"
      "  id: pricer-table\n"
      "  seq: 1\n"
      "  sources: [price_table.c]\n"
      "  functions: [price_item]\n"
      "workload:\n";
  for (const auto& w : workloads) {
    yaml += "  - name: " + w +
            "\n"
            "    command: [pricer, --threads, \"{threads}\", --duration-ms, \"{duration_ms}\"]\n"
            "    threads: 2\n"
            "    duration: 30s\n"
            "    warmup: 200ms\n";
  }
  yaml +=
      "measure:\n"
      "  window: 200ms\n"
      "  max_alternations: 12\n"
      "expect:\n"
      "  verdict: pass\n";
  EXPECT_TRUE(WriteFileAtomic(folder / "scenario.yaml", yaml).has_value());
  return folder;
}

}  // namespace patchlab::metrics::testing
