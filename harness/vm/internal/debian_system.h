// A real Debian system for a reference image: the root file system that
// `mmdebstrap` makes from a suite and a package list, with every package
// installed the way Debian installs it (dependencies resolved by apt,
// maintainer scripts run). The lab boots it as the guest's root, so Debian's
// own programs (nginx, redis-server, python3) run as they do on a fleet.
//
// Builds are cached under CACHE/systems/KEY/root, KEY covering the suite, the
// sorted package list and the apt sources used; a build goes to a temporary
// folder renamed at the end, so nothing half-made is ever found in the cache.
//
// Thread-safety: reentrant; concurrent builds of the same system each build,
// and the first rename wins (the other copy is removed).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/error.h"

namespace patchlab::harness::internal {

struct DebianSystemSpec {
  std::string suite = "bookworm";
  std::vector<std::string> packages;  // installed with their dependencies
  std::string where;                  // "images.yaml:12:5", for messages
};

struct DebianSystem {
  std::filesystem::path root;                   // the unpacked root file system
  std::string key;                              // content key of the inputs
  std::map<std::string, std::string> versions;  // every installed package -> version
};

// The cache key of `spec`: suite, sorted packages and the host's apt sources.
std::string DebianSystemKey(const DebianSystemSpec& spec);

// The system of `spec` under `cache_dir`, made with mmdebstrap when absent
// (minutes: it downloads every package). Fails with kNotFound naming the first
// package apt does not know (and apt's words) before anything is downloaded,
// with kInfra naming the package and dpkg's/apt's error when an install fails,
// and with kNotFound when mmdebstrap is not installed.
Result<DebianSystem> BuildDebianSystem(const DebianSystemSpec& spec,
                                       const std::filesystem::path& cache_dir);

// The system of `spec` if it is in the cache; kNotFound otherwise. Builds nothing.
Result<DebianSystem> CachedDebianSystem(const DebianSystemSpec& spec,
                                        const std::filesystem::path& cache_dir);

// "E: ..." and "dpkg: error ..." lines of apt/dpkg/mmdebstrap output, joined
// by "; " (the last three), or the last line when there is none: the words a
// user needs when an install failed.
std::string AptErrorLines(std::string_view output);

}  // namespace patchlab::harness::internal
