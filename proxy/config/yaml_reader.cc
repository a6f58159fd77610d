#include "proxy/config/yaml_reader.h"

#include <algorithm>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace saltproxy::config_internal {

YamlSection::YamlSection(const YAML::Node& node, std::string path, absl::string_view source,
                         std::vector<std::string>* errors)
    : node_(node), path_(std::move(path)), source_(source), errors_(errors) {
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
    errors_->push_back(absl::StrCat(source_, ":", node_.Mark().line + 1, ": ", path_,
                                    ": expected a mapping of options"));
    node_ = YAML::Node();
  }
}

bool YamlSection::Has(absl::string_view key) const {
  return node_.IsMap() && node_[std::string(key)].IsDefined();
}

YAML::Node YamlSection::Take(absl::string_view key) {
  consumed_.emplace_back(key);
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node child = node_[std::string(key)];
  return child;
}

std::string YamlSection::Where(const YAML::Node& node, absl::string_view key) const {
  std::string field = path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  int line = node.IsDefined() ? node.Mark().line + 1 : node_.Mark().line + 1;
  if (line <= 0) return absl::StrCat(source_, ": ", field);
  return absl::StrCat(source_, ":", line, ": ", field);
}

void YamlSection::Error(absl::string_view key, absl::string_view what) {
  YAML::Node at = Has(key) ? node_[std::string(key)] : node_;
  errors_->push_back(absl::StrCat(Where(at, key), ": ", what));
}

void YamlSection::TypeError(const YAML::Node& node, absl::string_view key,
                            absl::string_view expected) {
  std::string got;
  if (node.IsScalar()) {
    got = absl::StrCat("\"", node.Scalar(), "\"");
  } else if (node.IsSequence()) {
    got = "a list";
  } else if (node.IsMap()) {
    got = "a mapping";
  } else {
    got = "nothing";
  }
  errors_->push_back(absl::StrCat(Where(node, key), ": expected ", expected, ", got ", got));
}

void YamlSection::ReadString(absl::string_view key, std::string* out) {
  YAML::Node n = Take(key);
  if (!n.IsDefined()) return;
  if (!n.IsScalar()) return TypeError(n, key, "a string");
  *out = n.Scalar();
}

void YamlSection::ReadBool(absl::string_view key, bool* out) {
  YAML::Node n = Take(key);
  if (!n.IsDefined()) return;
  if (!n.IsScalar()) return TypeError(n, key, "true or false");
  const std::string& s = n.Scalar();
  if (s == "true") {
    *out = true;
  } else if (s == "false") {
    *out = false;
  } else {
    TypeError(n, key, "true or false");
  }
}

void YamlSection::ReadInt(absl::string_view key, int* out, int64_t min, int64_t max) {
  YAML::Node n = Take(key);
  if (!n.IsDefined()) return;
  int64_t v;
  std::string expected = absl::StrCat("an integer from ", min, " to ", max);
  if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), &v) || v < min || v > max) {
    return TypeError(n, key, expected);
  }
  *out = static_cast<int>(v);
}

void YamlSection::ReadUint64(absl::string_view key, uint64_t* out, uint64_t min, uint64_t max) {
  YAML::Node n = Take(key);
  if (!n.IsDefined()) return;
  uint64_t v;
  std::string expected = absl::StrCat("an integer from ", min, " to ", max);
  if (!n.IsScalar() || !n.Scalar().empty() && n.Scalar()[0] == '-' ||
      !absl::SimpleAtoi(n.Scalar(), &v) || v < min || v > max) {
    return TypeError(n, key, expected);
  }
  *out = v;
}

void YamlSection::ReadUint32(absl::string_view key, uint32_t* out, uint64_t min, uint64_t max) {
  uint64_t v = *out;
  ReadUint64(key, &v, min, std::min<uint64_t>(max, std::numeric_limits<uint32_t>::max()));
  *out = static_cast<uint32_t>(v);
}

void YamlSection::ReadDouble(absl::string_view key, double* out, double min, double max) {
  YAML::Node n = Take(key);
  if (!n.IsDefined()) return;
  double v;
  std::string expected = absl::StrCat("a number from ", min, " to ", max);
  if (!n.IsScalar() || !absl::SimpleAtod(n.Scalar(), &v) || !(v >= min && v <= max)) {
    return TypeError(n, key, expected);
  }
  *out = v;
}

void YamlSection::ReadDuration(absl::string_view key, absl::Duration* out, absl::Duration min,
                               absl::Duration max) {
  YAML::Node n = Take(key);
  if (!n.IsDefined()) return;
  absl::Duration d;
  std::string expected = absl::StrCat("a duration such as 250ms, 30s or 5m, from ",
                                      absl::FormatDuration(min), " to ", absl::FormatDuration(max));
  if (!n.IsScalar() || !absl::ParseDuration(n.Scalar(), &d) || d < min || d > max) {
    return TypeError(n, key, expected);
  }
  *out = d;
}

void YamlSection::ReadEnum(absl::string_view key, std::string* out,
                           const std::vector<std::string>& choices) {
  YAML::Node n = Take(key);
  if (!n.IsDefined()) return;
  std::string expected = absl::StrCat("one of ", absl::StrJoin(choices, ", "));
  if (!n.IsScalar() || std::find(choices.begin(), choices.end(), n.Scalar()) == choices.end()) {
    return TypeError(n, key, expected);
  }
  *out = n.Scalar();
}

void YamlSection::ReadStringMap(absl::string_view key, std::map<std::string, std::string>* out) {
  YAML::Node n = Take(key);
  if (!n.IsDefined() || n.IsNull()) return;
  if (!n.IsMap()) return TypeError(n, key, "a mapping of names to values");
  for (const auto& kv : n) {
    if (!kv.second.IsScalar()) {
      TypeError(kv.second, absl::StrCat(key, ".", kv.first.Scalar()), "a scalar value");
      continue;
    }
    (*out)[kv.first.Scalar()] = kv.second.Scalar();
  }
}

YamlSection YamlSection::Sub(absl::string_view key) {
  YAML::Node n = Take(key);
  std::string path = path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  return YamlSection(n, std::move(path), source_, errors_);
}

void YamlSection::ReadList(absl::string_view key, const std::function<void(YamlSection&)>& each) {
  YAML::Node n = Take(key);
  if (!n.IsDefined() || n.IsNull()) return;
  if (!n.IsSequence()) return TypeError(n, key, "a list");
  std::string base = path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  for (size_t i = 0; i < n.size(); ++i) {
    YamlSection element(n[i], absl::StrCat(base, "[", i, "]"), source_, errors_);
    each(element);
    element.Finish();
  }
}

void YamlSection::ForEachKey(
    const std::function<void(const std::string&, YamlSection&)>& each) {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string& name = kv.first.Scalar();
    consumed_.push_back(name);
    YamlSection child(kv.second, path_.empty() ? name : absl::StrCat(path_, ".", name), source_,
                      errors_);
    each(name, child);
  }
}

void YamlSection::Finish() {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string& name = kv.first.Scalar();
    if (std::find(consumed_.begin(), consumed_.end(), name) == consumed_.end()) {
      errors_->push_back(absl::StrCat(Where(kv.first, name), ": unknown field, expected one of ",
                                      absl::StrJoin(consumed_, ", ")));
    }
  }
}

}  // namespace saltproxy::config_internal
