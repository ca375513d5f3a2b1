#include "emulator/semantic_spec.h"

#include <filesystem>

namespace patchlab::emulator {
namespace {

std::string Relative(const std::string& file, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_absolute()) return path;
  return (std::filesystem::path(file).parent_path() / p).lexically_normal().string();
}

Result<FunctionRef> ReadFunction(const YamlMap& m, std::string_view key) {
  auto text = m.Get<std::string>(key);
  if (!text) return std::unexpected(text.error());
  auto ref = FunctionRef::Parse(*text);
  if (!ref)
    return std::unexpected(m.ErrorAt(key, "expected ELF:SYMBOL, e.g. target/app:parse_header"));
  ref->elf = Relative(m.file(), ref->elf);
  return ref;
}

}  // namespace

Result<CheckOptions> ParseSemanticSection(const YamlMap& m) {
  if (auto s = m.AllowOnly({"old", "new", "signature", "inputs", "seed", "expect", "corpus",
                            "max_blocks", "shrink_evaluations", "cpu", "deny_syscalls"});
      !s) {
    return std::unexpected(s.error());
  }
  CheckOptions o;
  auto old_fn = ReadFunction(m, "old");
  if (!old_fn) return std::unexpected(old_fn.error());
  auto new_fn = ReadFunction(m, "new");
  if (!new_fn) return std::unexpected(new_fn.error());
  o.old_fn = *old_fn;
  o.new_fn = *new_fn;
  auto sig = m.GetOr<std::string>("signature", "");
  if (!sig) return std::unexpected(sig.error());
  o.signature = *sig;
  auto inputs = m.GetOr<uint64_t>("inputs", o.inputs);
  if (!inputs) return std::unexpected(inputs.error());
  if (*inputs == 0) return std::unexpected(m.ErrorAt("inputs", "must be at least 1"));
  o.inputs = *inputs;
  auto seed = m.GetOr<uint64_t>("seed", o.seed);
  if (!seed) return std::unexpected(seed.error());
  o.seed = *seed;
  if (m.Has("expect")) {
    auto e = m.GetStrings("expect");
    if (!e) return std::unexpected(e.error());
    o.expects = *e;
  }
  auto corpus = m.GetOr<std::string>("corpus", "");
  if (!corpus) return std::unexpected(corpus.error());
  if (!corpus->empty()) o.corpus_dir = Relative(m.file(), *corpus);
  auto blocks = m.GetOr<uint64_t>("max_blocks", o.max_blocks);
  if (!blocks) return std::unexpected(blocks.error());
  if (*blocks < 1000) return std::unexpected(m.ErrorAt("max_blocks", "must be at least 1000"));
  o.max_blocks = *blocks;
  auto shrink = m.GetOr<int>("shrink_evaluations", o.shrink_evaluations);
  if (!shrink) return std::unexpected(shrink.error());
  if (*shrink < 0) return std::unexpected(m.ErrorAt("shrink_evaluations", "must not be negative"));
  o.shrink_evaluations = *shrink;
  auto cpu = m.GetOr<std::string>("cpu", "");
  if (!cpu) return std::unexpected(cpu.error());
  o.cpu = *cpu;
  auto deny = m.GetOr<bool>("deny_syscalls", false);
  if (!deny) return std::unexpected(deny.error());
  o.deny_syscalls = *deny;
  // Expressions are checked against the signature when the check runs (the
  // signature may come from DWARF, which needs the ELF).
  return o;
}

Result<CheckOptions> LoadSemanticSpec(const std::string& scenario_path) {
  auto doc = LoadYamlFile(scenario_path);
  if (!doc) return std::unexpected(doc.error());
  auto root = YamlMap::Of(scenario_path, *doc, "");
  if (!root) return std::unexpected(root.error());
  if (!root->Has("semantic")) {
    return Fail(ErrorCode::kNotFound, "{}: no 'semantic:' section to check", scenario_path);
  }
  auto section = root->Map("semantic");
  if (!section) return std::unexpected(section.error());
  return ParseSemanticSection(*section);
}

}  // namespace patchlab::emulator
