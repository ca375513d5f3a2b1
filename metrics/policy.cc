#include "metrics/policy.h"

#include <algorithm>
#include <set>

#include "base/yaml_util.h"
#include "metrics/internal/policy_default_text.h"

namespace patchlab::metrics {
namespace {

Status ReadRings(const YamlMap& root, std::vector<Ring>& rings) {
  YAML::Node list = root.Node("rings");
  if (!list.IsSequence() || list.size() == 0) {
    return std::unexpected(root.ErrorAt("rings", "must be a non-empty list of {name, images}"));
  }
  std::vector<Ring> out;
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    auto item = YamlMap::Of(root.file(), list[i], fmt::format("rings[{}]", i));
    if (!item) return std::unexpected(item.error());
    if (auto s = item->AllowOnly({"name", "images"}); !s) return s;
    Ring ring;
    auto name = item->Get<std::string>("name");
    if (!name) return std::unexpected(name.error());
    if (name->empty()) return std::unexpected(item->ErrorAt("name", "must not be empty"));
    if (!names.insert(*name).second) {
      return std::unexpected(item->ErrorAt("name", fmt::format("ring '{}' is named twice", *name)));
    }
    ring.name = *name;
    auto images = item->GetStrings("images");
    if (!images) return std::unexpected(images.error());
    if (images->size() == 1 && images->front() == "all") {
      ring.all_images = true;
    } else if (images->empty()) {
      return std::unexpected(item->ErrorAt("images", "must name at least one image, or be 'all'"));
    } else {
      for (const auto& image : *images) {
        if (image.empty() || image == "all") {
          return std::unexpected(
              item->ErrorAt("images", "'all' stands alone; image names must not be empty"));
        }
      }
      ring.images = *images;
    }
    out.push_back(std::move(ring));
  }
  rings = std::move(out);
  return {};
}

template <typename T>
Status ReadBound(const YamlMap& root, std::string_view key, T& field) {
  if (!root.Has(key)) return {};
  auto value = root.Get<T>(key);
  if (!value) return std::unexpected(value.error());
  if (*value < 0) return std::unexpected(root.ErrorAt(key, "must not be negative"));
  field = *value;
  return {};
}

Status ReadFlag(const YamlMap& root, std::string_view key, bool& field) {
  if (!root.Has(key)) return {};
  auto value = root.Get<bool>(key);
  if (!value) return std::unexpected(value.error());
  field = *value;
  return {};
}

Result<Policy> Overlay(Policy policy, const YAML::Node& doc, const std::string& name) {
  if (doc.IsNull()) {
    policy.source = name;
    return policy;  // an empty file changes nothing
  }
  auto root = YamlMap::Of(name, doc, "");
  if (!root) return std::unexpected(root.error());
  if (auto s =
          root->AllowOnly({"max_crashes", "max_cpu_overhead_pct", "cpu_overhead_judged_on",
                           "max_memory_overhead_mib", "max_pause_ms", "require_semantic_pass",
                           "require_applied", "require_pass_verdict", "require_figures", "rings"});
      !s) {
    return std::unexpected(s.error());
  }
  if (auto s = ReadBound(*root, "max_crashes", policy.max_crashes); !s)
    return std::unexpected(s.error());
  if (auto s = ReadBound(*root, "max_cpu_overhead_pct", policy.max_cpu_overhead_pct); !s) {
    return std::unexpected(s.error());
  }
  if (auto s = ReadBound(*root, "max_memory_overhead_mib", policy.max_memory_overhead_mib); !s) {
    return std::unexpected(s.error());
  }
  if (auto s = ReadBound(*root, "max_pause_ms", policy.max_pause_ms); !s)
    return std::unexpected(s.error());
  if (root->Has("cpu_overhead_judged_on")) {
    auto judged = root->Get<std::string>("cpu_overhead_judged_on");
    if (!judged) return std::unexpected(judged.error());
    if (*judged == "interval") {
      policy.cpu_overhead_judged_on = OverheadJudgedOn::kInterval;
    } else if (*judged == "median") {
      policy.cpu_overhead_judged_on = OverheadJudgedOn::kMedian;
    } else if (*judged == "upper-bound") {
      policy.cpu_overhead_judged_on = OverheadJudgedOn::kUpperBound;
    } else {
      return std::unexpected(root->ErrorAt(
          "cpu_overhead_judged_on",
          fmt::format("must be 'interval', 'upper-bound' or 'median', got '{}'", *judged)));
    }
  }
  for (auto [key, field] :
       {std::pair<const char*, bool*>{"require_semantic_pass", &policy.require_semantic_pass},
        {"require_applied", &policy.require_applied},
        {"require_pass_verdict", &policy.require_pass_verdict},
        {"require_figures", &policy.require_figures}}) {
    if (auto s = ReadFlag(*root, key, *field); !s) return std::unexpected(s.error());
  }
  if (root->Has("rings")) {
    if (auto s = ReadRings(*root, policy.rings); !s) return std::unexpected(s.error());
  }
  policy.source = name;
  return policy;
}

}  // namespace

bool Ring::Contains(const std::string& image) const {
  return all_images || std::find(images.begin(), images.end(), image) != images.end();
}

const Ring* Policy::FindRing(const std::string& name) const {
  for (const Ring& r : rings) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

const Policy& DefaultPolicy() {
  static const Policy policy = [] {
    auto doc = LoadYamlString(internal::kPolicyDefaultText, "policy-default.yaml");
    if (!doc) std::abort();  // compiled-in text; tests parse it
    auto p = Overlay(Policy{}, *doc, "policy-default.yaml");
    if (!p || p->rings.empty()) std::abort();
    p->source = "built-in default policy";
    return *p;
  }();
  return policy;
}

Result<Policy> ParsePolicy(const std::string& text, const std::string& name) {
  auto doc = LoadYamlString(text, name);
  if (!doc) return std::unexpected(doc.error());
  return Overlay(DefaultPolicy(), *doc, name);
}

Result<Policy> LoadPolicy(const std::string& path) {
  auto doc = LoadYamlFile(path);
  if (!doc) return std::unexpected(doc.error());
  return Overlay(DefaultPolicy(), *doc, path);
}

}  // namespace patchlab::metrics
