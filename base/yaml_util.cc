#include "base/yaml_util.h"

#include <cstdint>

namespace patchlab {
namespace {

std::string MarkString(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null()) return file;
  return fmt::format("{}:{}:{}", file, mark.line + 1, mark.column + 1);
}

template <typename T>
constexpr std::string_view TypeName() {
  if constexpr (std::is_same_v<T, std::string>)
    return "a string";
  else if constexpr (std::is_same_v<T, bool>)
    return "true or false";
  else if constexpr (std::is_same_v<T, double>)
    return "a number";
  else if constexpr (std::is_unsigned_v<T>)
    return "a non-negative integer";
  else
    return "an integer";
}

}  // namespace

std::string YamlWhere(const std::string& file, const YAML::Node& node) {
  return MarkString(file, node.Mark());
}

Result<YAML::Node> LoadYamlString(const std::string& text, const std::string& name) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return std::unexpected(
        Error(ErrorCode::kParse, fmt::format("{}: {}", MarkString(name, e.mark), e.msg)));
  }
}

Result<YAML::Node> LoadYamlFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return FailErrno("open " + path);
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return LoadYamlString(text, path);
}

Result<YamlMap> YamlMap::Of(std::string file, YAML::Node node, std::string path) {
  if (!node.IsMap()) {
    return Fail(ErrorCode::kParse, "{}: {} must be a mapping", YamlWhere(file, node),
                path.empty() ? "the document" : "'" + path + "'");
  }
  return YamlMap(std::move(file), std::move(node), std::move(path));
}

std::string YamlMap::FieldPath(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  if (key.empty()) return path_;
  return path_ + "." + std::string(key);
}

Error YamlMap::ErrorAt(std::string_view key, std::string message) const {
  YAML::Node at = node_;
  if (!key.empty()) {
    for (const auto& kv : node_) {
      if (kv.first.Scalar() == key) {
        at = kv.second.IsNull() ? kv.first : kv.second;
        break;
      }
    }
  }
  return Error(ErrorCode::kParse, fmt::format("{}: {}: {}", YamlWhere(file_, at),
                                              key.empty() ? path_ : FieldPath(key), message));
}

Status YamlMap::AllowOnly(std::initializer_list<std::string_view> allowed) const {
  for (const auto& kv : node_) {
    const std::string& key = kv.first.Scalar();
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || a == key;
    if (!ok) {
      std::string list;
      for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return std::unexpected(Error(
          ErrorCode::kParse,
          fmt::format("{}: unknown key '{}' in {} (allowed: {})", YamlWhere(file_, kv.first),
                      FieldPath(key), path_.empty() ? "the document" : "'" + path_ + "'", list)));
    }
  }
  return {};
}

bool YamlMap::Has(std::string_view key) const {
  for (const auto& kv : node_) {
    if (kv.first.Scalar() == key) return true;
  }
  return false;
}

YAML::Node YamlMap::Node(std::string_view key) const {
  for (const auto& kv : node_) {
    if (kv.first.Scalar() == key) return kv.second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

Result<YamlMap> YamlMap::Map(std::string_view key) const {
  if (!Has(key))
    return std::unexpected(ErrorAt("", fmt::format("missing required field '{}'", key)));
  return Of(file_, Node(key), FieldPath(key));
}

template <typename T>
Result<T> YamlMap::Get(std::string_view key) const {
  if (!Has(key))
    return std::unexpected(ErrorAt("", fmt::format("missing required field '{}'", key)));
  YAML::Node value = Node(key);
  if (!value.IsScalar()) {
    return std::unexpected(ErrorAt(key, fmt::format("must be {}", TypeName<T>())));
  }
  try {
    if constexpr (std::is_unsigned_v<T> && !std::is_same_v<T, bool>) {
      if (!value.Scalar().empty() && value.Scalar()[0] == '-') {
        return std::unexpected(ErrorAt(key, fmt::format("must be {}", TypeName<T>())));
      }
    }
    return value.as<T>();
  } catch (const YAML::Exception&) {
    return std::unexpected(
        ErrorAt(key, fmt::format("must be {}, got '{}'", TypeName<T>(), value.Scalar())));
  }
}

template <typename T>
Result<T> YamlMap::GetOr(std::string_view key, T fallback) const {
  if (!Has(key)) return fallback;
  return Get<T>(key);
}

Result<std::vector<std::string>> YamlMap::GetStrings(std::string_view key) const {
  if (!Has(key))
    return std::unexpected(ErrorAt("", fmt::format("missing required field '{}'", key)));
  YAML::Node value = Node(key);
  std::vector<std::string> out;
  if (value.IsScalar()) {
    out.push_back(value.Scalar());
    return out;
  }
  if (!value.IsSequence()) {
    return std::unexpected(ErrorAt(key, "must be a string or a list of strings"));
  }
  for (const auto& item : value) {
    if (!item.IsScalar()) {
      return std::unexpected(
          Error(ErrorCode::kParse, fmt::format("{}: {}: every item must be a string",
                                               YamlWhere(file_, item), FieldPath(key))));
    }
    out.push_back(item.Scalar());
  }
  return out;
}

template Result<std::string> YamlMap::Get<std::string>(std::string_view) const;
template Result<bool> YamlMap::Get<bool>(std::string_view) const;
template Result<int> YamlMap::Get<int>(std::string_view) const;
template Result<int64_t> YamlMap::Get<int64_t>(std::string_view) const;
template Result<uint64_t> YamlMap::Get<uint64_t>(std::string_view) const;
template Result<double> YamlMap::Get<double>(std::string_view) const;
template Result<std::string> YamlMap::GetOr<std::string>(std::string_view, std::string) const;
template Result<bool> YamlMap::GetOr<bool>(std::string_view, bool) const;
template Result<int> YamlMap::GetOr<int>(std::string_view, int) const;
template Result<int64_t> YamlMap::GetOr<int64_t>(std::string_view, int64_t) const;
template Result<uint64_t> YamlMap::GetOr<uint64_t>(std::string_view, uint64_t) const;
template Result<double> YamlMap::GetOr<double>(std::string_view, double) const;

}  // namespace patchlab
