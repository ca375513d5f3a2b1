// Logging with levels and a per-component switch, on spdlog.
//
// Each component logs through its own named logger: Log("patchcore")->info(...).
// Levels come from PATCHLAB_LOG, e.g. "warn" or "info,patchcore=debug,harness=trace",
// or from SetLogSpec() (the tools' --log flag). Logs go to stderr; figures go to
// the database, never to logs.
//
// Thread-safety: loggers are thread-safe; SetLogSpec should run before threads start.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string_view>

#include "base/error.h"

namespace patchlab {

// The logger of `component`, made on first use with the level the spec gives it.
std::shared_ptr<spdlog::logger> Log(std::string_view component);

// Applies a spec "LEVEL[,COMPONENT=LEVEL...]". Fails on an unknown level name,
// naming it; on failure nothing changes.
Status SetLogSpec(std::string_view spec);

}  // namespace patchlab
