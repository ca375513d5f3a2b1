// The `semantic:` section of a scenario file: which old and new function to
// compare and how (scenarios/README.md has the keys). The scenario
// parser calls ParseSemanticSection on that section; `patchlab check
// SCENARIO.yaml` calls LoadSemanticSpec, which reads nothing else of the file.
// Relative paths are relative to the scenario file's folder.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "base/error.h"
#include "base/yaml_util.h"
#include "emulator/checker.h"

namespace patchlab::emulator {

// Reads the section into CheckOptions. Fails (kParse) on an unknown key, a
// missing `old`/`new`, a value of the wrong type or an ELF:SYMBOL without a
// ':', naming file:line:column and the field ("semantic.inputs").
Result<CheckOptions> ParseSemanticSection(const YamlMap& section);

// Loads `scenario_path` and parses its `semantic:` section. Fails naming the
// file when it cannot be read or has no such section.
Result<CheckOptions> LoadSemanticSpec(const std::string& scenario_path);

}  // namespace patchlab::emulator
