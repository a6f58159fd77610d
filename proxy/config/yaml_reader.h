// A strict reader for one YAML mapping of the config file. It reads typed fields, remembers
// which keys it consumed, and reports every mistake with the field's dotted path, the line and
// what was expected. Unknown keys are errors: a misspelt option must never be silently ignored.
//
//   YamlSection http(root, "http", source, &errors);
//   http.ReadInt("threads", &config.http.threads, 1, 64);
//   http.Finish();  // reports keys nobody read
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace saltproxy::config_internal {

class YamlSection {
 public:
  // `node` may be null/undefined (an absent section): reads then keep defaults.
  YamlSection(const YAML::Node& node, std::string path, absl::string_view source,
              std::vector<std::string>* errors);

  bool Has(absl::string_view key) const;
  void ReadString(absl::string_view key, std::string* out);
  void ReadBool(absl::string_view key, bool* out);
  void ReadInt(absl::string_view key, int* out, int64_t min, int64_t max);
  void ReadUint64(absl::string_view key, uint64_t* out, uint64_t min, uint64_t max);
  void ReadUint32(absl::string_view key, uint32_t* out, uint64_t min, uint64_t max);
  void ReadDouble(absl::string_view key, double* out, double min, double max);
  // A duration written as "250ms", "30s", "5m" (absl::ParseDuration syntax), within bounds.
  void ReadDuration(absl::string_view key, absl::Duration* out, absl::Duration min,
                    absl::Duration max);
  // One of `choices`; the error lists them.
  void ReadEnum(absl::string_view key, std::string* out, const std::vector<std::string>& choices);
  // A mapping of scalar strings (e.g. librdkafka pass-through properties).
  void ReadStringMap(absl::string_view key, std::map<std::string, std::string>* out);
  // A nested mapping; consumes the key. The returned section shares this one's error list.
  YamlSection Sub(absl::string_view key);
  // A sequence of mappings; calls `each` with a section per element.
  void ReadList(absl::string_view key, const std::function<void(YamlSection&)>& each);

  // A mapping whose keys are names chosen by the user (e.g. topic names): calls `each` with
  // every key and its section, and consumes them all.
  void ForEachKey(const std::function<void(const std::string&, YamlSection&)>& each);

  // Records an error at this section (or at `key` when it is present).
  void Error(absl::string_view key, absl::string_view what);
  // Reports every key of the mapping that no Read* consumed.
  void Finish();

  const std::string& path() const { return path_; }

 private:
  // Marks `key` consumed and returns its node if present (undefined node otherwise).
  YAML::Node Take(absl::string_view key);
  std::string Where(const YAML::Node& node, absl::string_view key) const;
  void TypeError(const YAML::Node& node, absl::string_view key, absl::string_view expected);

  YAML::Node node_;
  std::string path_;
  std::string source_;
  std::vector<std::string>* errors_;
  std::vector<std::string> consumed_;
};

}  // namespace saltproxy::config_internal
