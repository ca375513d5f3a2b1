// Policy: what a patch must show before it may ship, and the rollout rings.
//
// The built-in default (metrics/policy-default.yaml, compiled in) encodes: 0
// crashes, CPU overhead below 2% (judged on its interval: overhead_rule.h),
// memory overhead below 15 MiB per patched process, pause below a bound,
// semantic check passed, applied on every image of every ring. A policy file
// overrides any field; the rest keep the default. `patchlab run` judges its
// cells under the same policy, a scenario's `limits:` only tightening it.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "metrics/overhead_rule.h"

namespace patchlab::metrics {

struct Ring {
  std::string name;
  bool all_images = false;          // "images: all"
  std::vector<std::string> images;  // when not all_images
  bool Contains(const std::string& image) const;
};

struct Policy {
  int max_crashes = 0;
  double max_cpu_overhead_pct = 2.0;
  OverheadJudgedOn cpu_overhead_judged_on = OverheadJudgedOn::kInterval;
  double max_memory_overhead_mib = 15;
  double max_pause_ms = 500;
  bool require_semantic_pass = true;
  bool require_applied = true;
  bool require_pass_verdict = true;
  bool require_figures = true;
  std::vector<Ring> rings;  // in rollout order; never empty
  std::string source;       // the file it came from, or "built-in default policy"

  // The ring called `name`, or nullptr.
  const Ring* FindRing(const std::string& name) const;
};

// The built-in default policy (never fails: the text is compiled in and tested).
const Policy& DefaultPolicy();

// Reads a policy file: fields it sets override the default. Fails with kParse
// naming FILE:LINE:COL and the field on an unknown key, a wrong type, a value
// out of range (negative bounds), a duplicate or empty ring, an empty image
// list; kNotFound when the file is absent.
Result<Policy> LoadPolicy(const std::string& path);
// As LoadPolicy, from text, with `name` used in messages as the file name.
Result<Policy> ParsePolicy(const std::string& text, const std::string& name);

}  // namespace patchlab::metrics
