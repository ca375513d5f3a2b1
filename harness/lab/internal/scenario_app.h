// The parts of scenario.yaml for targets the lab does not build (real
// applications): the target's program/package/binary, a prebuilt patch
// package, and the workload's service, load generator and check. Each fails
// with kParse at FILE:LINE:COL naming the dotted field, like the rest of the
// scenario parser (harness/lab/scenario.h).
//
// Thread-safety: reentrant.
#pragma once

#include "base/error.h"
#include "base/yaml_util.h"
#include "harness/lab/scenario.h"

namespace patchlab::harness::internal {

// `target:` without sources: program (absolute, in the guest), package, binary.
Status ParseAppTarget(const YamlMap& target, TargetSpec& out);

// A patch's `package:` and `pubkey:` (both, relative to the scenario folder).
Status ParsePrebuiltPatch(const YamlMap& patch, PatchSpec& out);

// `workload.service`, `workload.load`, `workload.check` and `workload.files`;
// at least a service and one of load/check.
Status ParseAppWorkload(const YamlMap& workload, WorkloadSpec& out);

// Whether `pattern` is a valid ECMAScript regex; the error names the field.
Status CheckRegex(const YamlMap& m, std::string_view key, const std::string& pattern);

}  // namespace patchlab::harness::internal
