// Strict YAML reading for the lab's documents (scenarios, policies, image recipes).
//
// A YamlDoc loads a file and turns every yaml-cpp exception into an Error that
// names file:line:column. A YamlMap wraps one mapping node: it rejects keys it
// was not told about and reads typed fields, each error naming the file, line,
// column and the field's dotted path ("workload.threads").
//
// No exception leaves this header's functions. Thread-safety: none; one per thread.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace patchlab {

// "FILE:LINE:COL" for a node (1-based), or FILE alone when the node has no mark.
std::string YamlWhere(const std::string& file, const YAML::Node& node);

// Parses `path`; fails with kNotFound or kParse naming file:line:col.
Result<YAML::Node> LoadYamlFile(const std::string& path);
// Parses `text` as if it were the file `name`.
Result<YAML::Node> LoadYamlString(const std::string& text, const std::string& name);

class YamlMap {
 public:
  // `path` is the dotted location of `node` in its document ("" for the root).
  // Fails when `node` is not a mapping.
  static Result<YamlMap> Of(std::string file, YAML::Node node, std::string path);

  // Fails on the first key not in `allowed`, naming it, where it is, and what is allowed.
  Status AllowOnly(std::initializer_list<std::string_view> allowed) const;

  bool Has(std::string_view key) const;
  YAML::Node Node(std::string_view key) const;
  // A child mapping as a YamlMap (fails if absent or not a mapping).
  Result<YamlMap> Map(std::string_view key) const;

  // Typed reads: T is std::string, bool, int64_t, uint64_t, int, double.
  template <typename T>
  Result<T> Get(std::string_view key) const;
  template <typename T>
  Result<T> GetOr(std::string_view key, T fallback) const;
  // A scalar or a sequence of scalars, as a list.
  Result<std::vector<std::string>> GetStrings(std::string_view key) const;

  // An error about `key` (or the map itself with an empty key), at its location.
  Error ErrorAt(std::string_view key, std::string message) const;

  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }
  std::string FieldPath(std::string_view key) const;

 private:
  YamlMap(std::string file, YAML::Node node, std::string path)
      : file_(std::move(file)), node_(std::move(node)), path_(std::move(path)) {}
  std::string file_;
  YAML::Node node_;
  std::string path_;
};

}  // namespace patchlab
