#include "tools/hotpatch/pid_commands.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "base/version.h"
#include "patchcore/patch_package.h"
#include "patchcore/patcher.h"
#include "tools/hotpatch/cli_common.h"

namespace patchlab::hotpatch {

using nlohmann::ordered_json;

int CmdKeygen(const std::string& out) {
  if (auto st = patchcore::GenerateKeyPair(out); !st) return Report(st.error(), "keygen");
  std::printf("wrote %s/patch.key (0600) and %s/patch.pub\n", out.c_str(), out.c_str());
  return kExitOk;
}

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
    j["staging_us"] = r->staging.count();
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

}  // namespace patchlab::hotpatch
