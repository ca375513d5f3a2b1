// hotpatch: applies, stacks, reverts and verifies live patches in running
// x86-64 Linux processes through trampolines. See docs/hotpatch.md.
//
// Exit codes, everywhere: 0 done; 2 usage error or unreadable input; 3 refused
// before anything changed; 4 failed part-way and fully rolled back (and, for
// verify, a mismatch); 5 the target vanished.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/version.h"
#include "patchcore/patch_package.h"
#include "patchcore/patcher.h"

namespace patchlab {
namespace {

using nlohmann::ordered_json;
using patchcore::RemotePtr;

constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitRefused = 3;
constexpr int kExitRolledBack = 4;
constexpr int kExitGone = 5;

int ExitCodeFor(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kParse:
      return kExitUsage;
    case ErrorCode::kRefused:
    case ErrorCode::kUnsupported:
    case ErrorCode::kTimeout:
      return kExitRefused;
    case ErrorCode::kTargetGone:
      return kExitGone;
    default:
      return kExitRolledBack;
  }
}

int Report(const Error& e, const char* command) {
  int code = ExitCodeFor(e);
  const char* what = code == kExitRefused ? "refused"
                     : code == kExitGone  ? "target gone"
                     : code == kExitUsage ? "error"
                                          : "failed";
  std::fprintf(stderr, "hotpatch %s: %s: %s\n", command, what, e.ToString().c_str());
  return code;
}

std::string Hex(RemotePtr p) { return fmt::format("{:#x}", p.addr()); }

int CmdKeygen(const std::string& out) {
  if (auto st = patchcore::GenerateKeyPair(out); !st) return Report(st.error(), "keygen");
  std::printf("wrote %s/patch.key (0600) and %s/patch.pub\n", out.c_str(), out.c_str());
  return kExitOk;
}

struct PackArgs {
  std::string target, object, id, key, out;
  uint64_t seq = 0;
  std::vector<std::string> funcs, refs, depends;
  std::string replaces;
};

int CmdPack(const PackArgs& a) {
  auto target = ElfFile::Open(a.target);
  if (!target) return Report(target.error(), "pack");
  if (target->build_id().empty()) {
    std::fprintf(stderr,
                 "hotpatch pack: error: %s has no GNU build-id (link it with "
                 "-Wl,--build-id)\n",
                 a.target.c_str());
    return kExitUsage;
  }
  auto object_bytes = ReadFile(a.object);
  if (!object_bytes) return Report(object_bytes.error(), "pack");
  auto object = ElfFile::FromBytes(*object_bytes, a.object);
  if (!object) return Report(object.error(), "pack");
  if (object->type() != ElfType::kShared) {
    std::fprintf(stderr,
                 "hotpatch pack: error: %s is not a shared object (build it with -fPIC "
                 "-shared)\n",
                 a.object.c_str());
    return kExitUsage;
  }
  std::optional<ElfFile> debug;
  if (auto dbg = FindDebugFile(target->build_id()); dbg) {
    if (auto d = ElfFile::Open(*dbg); d) debug = std::move(*d);
  }
  auto find_in_target = [&](const std::string& name) -> const ElfSymbol* {
    const ElfSymbol* s = target->FindSymbol(name);
    if ((!s || !s->defined) && debug) s = debug->FindSymbol(name);
    return s && s->defined ? s : nullptr;
  };
  patchcore::Manifest m;
  m.id = a.id;
  m.seq = a.seq;
  m.target_build_id = target->build_id();
  m.target_file = std::filesystem::path(a.target).filename().string();
  for (const std::string& f : a.funcs) {
    size_t eq = f.find('=');
    patchcore::FunctionMapping fm{f.substr(0, eq), eq == std::string::npos ? f : f.substr(eq + 1)};
    const ElfSymbol* old_sym = find_in_target(fm.old_name);
    if (!old_sym || old_sym->type != SymbolType::kFunc) {
      std::fprintf(stderr, "hotpatch pack: error: --func %s: no function %s in %s\n", f.c_str(),
                   fm.old_name.c_str(), a.target.c_str());
      return kExitUsage;
    }
    const ElfSymbol* new_sym = object->FindSymbol(fm.new_name);
    if (!new_sym || !new_sym->defined || new_sym->type != SymbolType::kFunc) {
      std::fprintf(stderr, "hotpatch pack: error: --func %s: no function %s in %s\n", f.c_str(),
                   fm.new_name.c_str(), a.object.c_str());
      return kExitUsage;
    }
    m.functions.push_back(fm);
  }
  for (const std::string& r : a.refs) {
    if (!find_in_target(r)) {
      std::fprintf(stderr,
                   "hotpatch pack: error: --ref %s: no such symbol in %s (or its debug "
                   "file)\n",
                   r.c_str(), a.target.c_str());
      return kExitUsage;
    }
    m.refs.push_back(r);
  }
  if (a.replaces == "all") {
    m.replaces_all = true;
  } else if (!a.replaces.empty()) {
    std::string_view rest = a.replaces;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string item(rest.substr(0, comma));
      if (!item.empty()) m.replaces.push_back(item);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  m.depends = a.depends;
  m.object_sha256 = Sha256Hex(*object_bytes);
  m.tool_version = Version();
  auto encoded = patchcore::EncodePackage(m, *object_bytes, a.key);
  if (!encoded) return Report(encoded.error(), "pack");
  if (auto st = WriteFileAtomic(a.out, *encoded, 0644); !st) return Report(st.error(), "pack");
  if (a.key.empty())
    std::fprintf(stderr, "hotpatch pack: warning: %s is unsigned\n", a.out.c_str());
  return kExitOk;
}

struct ApplyArgs {
  pid_t pid = 0;
  std::string pubkey, package;
  bool allow_unsigned = false, json = false;
  int64_t timeout_ms = 2000;
};

int CmdApply(const ApplyArgs& a) {
  if (a.pubkey.empty() && !a.allow_unsigned) {
    std::fprintf(stderr, "hotpatch apply: error: give --pubkey FILE or --allow-unsigned\n");
    return kExitUsage;
  }
  auto package = patchcore::ReadPackage(a.package);
  if (!package) return Report(package.error(), "apply");
  if (a.allow_unsigned && !package->is_signed()) {
    std::fprintf(stderr, "hotpatch apply: warning: applying unsigned package %s\n",
                 package->manifest.id.c_str());
  }
  auto patcher = patchcore::Patcher::Open(a.pid);
  if (!patcher) return Report(patcher.error(), "apply");
  patchcore::ApplyOptions o;
  o.pubkey = a.pubkey;
  o.allow_unsigned = a.allow_unsigned;
  o.timeout = std::chrono::milliseconds(a.timeout_ms);
  auto r = patcher->Apply(*package, o);
  if (!r) return Report(r.error(), "apply");
  if (a.json) {
    ordered_json j;
    j["patch_id"] = r->patch_id;
    j["seq"] = r->seq;
    j["functions"] = ordered_json::array();
    for (const auto& f : r->functions) {
      j["functions"].push_back(
          {{"name", f.name}, {"old_addr", Hex(f.old_addr)}, {"new_addr", Hex(f.new_addr)}});
    }
    j["pause_us"] = r->pause.count();
    j["attach_us"] = r->attach.count();
    j["retries"] = r->retries;
    j["mapped_bytes"] = r->mapped_bytes;
    j["island_bytes"] = r->island_bytes;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("applied %s (seq %lu) to pid %d: %zu function(s), pause %ld us, %d retries\n",
                r->patch_id.c_str(), static_cast<unsigned long>(r->seq), a.pid, r->functions.size(),
                static_cast<long>(r->pause.count()), r->retries);
  }
  return kExitOk;
}

int CmdRevert(pid_t pid, const std::string& id, bool all, bool json, int64_t timeout_ms) {
  if (all == !id.empty()) {
    std::fprintf(stderr, "hotpatch revert: error: give a patch ID or --all\n");
    return kExitUsage;
  }
  auto patcher = patchcore::Patcher::Open(pid);
  if (!patcher) return Report(patcher.error(), "revert");
  auto r = patcher->Revert(all ? std::nullopt : std::optional<std::string>(id),
                           std::chrono::milliseconds(timeout_ms));
  if (!r) return Report(r.error(), "revert");
  if (json) {
    ordered_json j;
    j["reverted"] = r->reverted;
    j["pause_us"] = r->pause.count();
    j["retries"] = r->retries;
    std::printf("%s\n", j.dump().c_str());
  } else {
    for (const std::string& rid : r->reverted) std::printf("reverted %s\n", rid.c_str());
    if (r->reverted.empty()) std::printf("no live patch in pid %d\n", pid);
  }
  return kExitOk;
}

int CmdStatus(pid_t pid, bool json) {
  auto patcher = patchcore::Patcher::Open(pid);
  if (!patcher) return Report(patcher.error(), "status");
  auto state = patcher->State();
  if (!state) return Report(state.error(), "status");
  const bool pending = patcher->HasPendingJournal();
  if (json) {
    ordered_json j;
    j["pid"] = pid;
    j["interrupted"] = pending;
    j["patches"] = ordered_json::array();
    for (const auto& p : state->patches) {
      ordered_json jp;
      jp["id"] = p.id;
      jp["seq"] = p.seq;
      jp["state"] = p.id == state->patches.back().id ? "live" : "stacked";
      jp["module"] = p.module;
      jp["functions"] = ordered_json::array();
      for (const auto& f : p.functions) {
        jp["functions"].push_back({{"name", f.name},
                                   {"old_addr", Hex(f.old_addr)},
                                   {"new_addr", Hex(f.new_addr)},
                                   {"active", state->LiveTarget(f.old_addr) == f.new_addr}});
      }
      j["patches"].push_back(std::move(jp));
    }
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  }
  if (pending) std::printf("interrupted operation pending: run `hotpatch recover --pid %d`\n", pid);
  if (state->patches.empty()) std::printf("pid %d: no live patch\n", pid);
  for (const auto& p : state->patches) {
    std::printf("%s seq %lu (%s)\n", p.id.c_str(), static_cast<unsigned long>(p.seq),
                p.module.c_str());
    for (const auto& f : p.functions) {
      bool active = state->LiveTarget(f.old_addr) == f.new_addr;
      std::printf("  %s %s -> %s %s\n", f.name.c_str(), Hex(f.old_addr).c_str(),
                  Hex(f.new_addr).c_str(), active ? "active" : "shadowed");
    }
  }
  return kExitOk;
}

int CmdVerify(pid_t pid, bool json) {
  auto patcher = patchcore::Patcher::Open(pid);
  if (!patcher) return Report(patcher.error(), "verify");
  auto r = patcher->Verify();
  if (!r) return Report(r.error(), "verify");
  if (json) {
    ordered_json j;
    j["ok"] = r->ok();
    j["checked"] = r->checked;
    j["mismatches"] = r->mismatches;
    std::printf("%s\n", j.dump().c_str());
  } else {
    for (const auto& m : r->mismatches) std::printf("MISMATCH %s\n", m.c_str());
    std::printf("%s: %d checks, %zu mismatches\n", r->ok() ? "ok" : "FAILED", r->checked,
                r->mismatches.size());
  }
  return r->ok() ? kExitOk : kExitRolledBack;
}

int CmdRecover(pid_t pid) {
  auto patcher = patchcore::Patcher::Open(pid);
  if (!patcher) return Report(patcher.error(), "recover");
  auto r = patcher->Recover();
  if (!r) return Report(r.error(), "recover");
  std::printf("%s\n", r->action == "none" ? "nothing to recover" : r->action.c_str());
  return kExitOk;
}

}  // namespace
}  // namespace patchlab

int main(int argc, char** argv) {
  using namespace patchlab;
  CLI::App app{"hotpatch: live-patch running x86-64 Linux processes", "hotpatch"};
  app.set_version_flag("--version", fmt::format("hotpatch {} ({})", Version(), GitDescribe()));
  app.require_subcommand(1);
  app.add_option("--log", "log levels, e.g. info,patchcore=debug")
      ->each([](const std::string& spec) {
        if (auto st = SetLogSpec(spec); !st) {
          throw CLI::ValidationError("--log", st.error().ToString());
        }
      });
  int exit_code = 0;

  std::string keygen_out;
  auto* keygen = app.add_subcommand("keygen", "write an Ed25519 key pair");
  keygen->add_option("--out", keygen_out, "folder for patch.key and patch.pub")->required();
  keygen->callback([&] { exit_code = CmdKeygen(keygen_out); });

  PackArgs pack_args;
  auto* pack = app.add_subcommand("pack", "build a signed patch package");
  pack->add_option("--target", pack_args.target, "the target ELF (executable or library)")
      ->required();
  pack->add_option("--object", pack_args.object, "the patch object (-fPIC -shared)")->required();
  pack->add_option("--id", pack_args.id, "patch id")->required();
  pack->add_option("--seq", pack_args.seq, "sequence number")->required();
  pack->add_option("--func", pack_args.funcs, "OLD[=NEW] function to replace")->required();
  pack->add_option("--ref", pack_args.refs, "private target symbol the patch uses");
  pack->add_option("--replaces", pack_args.replaces, "all, or ID,... this patch supersedes");
  pack->add_option("--depends", pack_args.depends, "ID that must be live");
  pack->add_option("--key", pack_args.key, "private key (DIR/patch.key); unsigned without");
  pack->add_option("-o,--out", pack_args.out, "output package")->required();
  pack->callback([&] { exit_code = CmdPack(pack_args); });

  ApplyArgs apply_args;
  auto* apply = app.add_subcommand("apply", "apply a patch package to a running process");
  apply->add_option("--pid", apply_args.pid, "target process")->required();
  apply->add_option("--pubkey", apply_args.pubkey, "public key to verify the package with");
  apply->add_flag("--allow-unsigned", apply_args.allow_unsigned, "accept an unsigned package");
  apply->add_option("--timeout", apply_args.timeout_ms, "ms to wait for threads to leave (2000)");
  apply->add_flag("--json", apply_args.json, "print one JSON object");
  apply->add_option("package", apply_args.package, "PKG.hpk")->required();
  apply->callback([&] { exit_code = CmdApply(apply_args); });

  pid_t revert_pid = 0;
  std::string revert_id;
  bool revert_all = false, revert_json = false;
  int64_t revert_timeout = 2000;
  auto* revert = app.add_subcommand("revert", "revert a live patch");
  revert->add_option("--pid", revert_pid, "target process")->required();
  revert->add_flag("--all", revert_all, "revert every patch");
  revert->add_flag("--json", revert_json, "print one JSON object");
  revert->add_option("--timeout", revert_timeout, "ms to wait for threads to leave (2000)");
  revert->add_option("id", revert_id, "patch id");
  revert->callback([&] {
    exit_code = CmdRevert(revert_pid, revert_id, revert_all, revert_json, revert_timeout);
  });

  pid_t status_pid = 0;
  bool status_json = false;
  auto* status = app.add_subcommand("status", "show the live patch stack of a process");
  status->add_option("--pid", status_pid, "target process")->required();
  status->add_flag("--json", status_json, "print one JSON object");
  status->callback([&] { exit_code = CmdStatus(status_pid, status_json); });

  pid_t verify_pid = 0;
  bool verify_json = false;
  auto* verify = app.add_subcommand("verify", "check every patched site against the stack");
  verify->add_option("--pid", verify_pid, "target process")->required();
  verify->add_flag("--json", verify_json, "print one JSON object");
  verify->callback([&] { exit_code = CmdVerify(verify_pid, verify_json); });

  pid_t recover_pid = 0;
  auto* recover =
      app.add_subcommand("recover", "finish an interrupted apply or revert from its journal");
  recover->add_option("--pid", recover_pid, "target process")->required();
  recover->callback([&] { exit_code = CmdRecover(recover_pid); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
