#include "saltproxy/salt_map.h"

#include <boost/json.hpp>

#include <algorithm>
#include <exception>

namespace saltproxy {
namespace {

namespace json = boost::json;

// RFC 4648 base64 (the map's "key_base64" for keys that are not UTF-8). False on bad input.
bool DecodeBase64(std::string_view in, std::string* out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out->clear();
  uint32_t bits = 0;
  int have = 0;
  size_t i = 0;
  for (; i < in.size() && in[i] != '='; ++i) {
    int v = value(in[i]);
    if (v < 0) return false;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    have += 6;
    if (have >= 8) {
      have -= 8;
      out->push_back(static_cast<char>((bits >> have) & 0xff));
    }
  }
  for (; i < in.size(); ++i) {
    if (in[i] != '=') return false;
  }
  return true;
}

std::string String(const json::object& o, std::string_view field) {
  const json::value* v = o.if_contains(field);
  if (!v || !v->is_string()) throw std::invalid_argument(std::string(field) + " is not a string");
  return std::string(v->as_string());
}

int64_t Int(const json::object& o, std::string_view field) {
  const json::value* v = o.if_contains(field);
  if (!v) throw std::invalid_argument(std::string(field) + " is missing");
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  throw std::invalid_argument(std::string(field) + " is not an integer");
}

KeyLayout ReadLayout(const json::object& k, const std::string& instance, const std::string& topic) {
  KeyLayout layout;
  layout.instance = instance;
  layout.topic = topic;
  if (k.contains("key_base64")) {
    if (!DecodeBase64(String(k, "key_base64"), &layout.key)) {
      throw std::invalid_argument("key_base64 is not base64");
    }
  } else {
    layout.key = String(k, "key");
  }
  layout.action = String(k, "action");
  layout.destination = String(k, "destination");
  const json::value* partitions = k.if_contains("partitions");
  if (!partitions || !partitions->is_array()) throw std::invalid_argument("no partitions");
  for (const json::value& p : partitions->as_array()) {
    layout.partitions.push_back(static_cast<int32_t>(p.to_number<int64_t>()));
  }
  layout.epoch = static_cast<uint64_t>(Int(k, "epoch"));
  layout.since_seq = Int(k, "since_seq");
  if (const json::value* v = k.if_contains("hot_since"); v && v->is_string()) {
    layout.hot_since = std::string(v->as_string());
  }
  if (const json::value* v = k.if_contains("changed_at"); v && v->is_string()) {
    layout.changed_at = std::string(v->as_string());
  }
  if (const json::value* v = k.if_contains("resumed"); v && v->is_bool()) {
    layout.resumed = v->as_bool();
  }
  if (const json::value* cutover = k.if_contains("cutover"); cutover && cutover->is_array()) {
    for (const json::value& c : cutover->as_array()) {
      const json::object& point = c.as_object();
      layout.cutover.push_back(CutOverPoint{String(point, "topic"),
                                            static_cast<int32_t>(Int(point, "partition")),
                                            Int(point, "max_offset")});
    }
  }
  return layout;
}

}  // namespace

bool ParseSaltMap(std::string_view text, PublishedSaltMap* map, std::string* error) {
  PublishedSaltMap parsed;
  try {
    json::value root = json::parse(json::string_view(text.data(), text.size()));
    const json::object& object = root.as_object();
    parsed.instance = String(object, "instance");
    parsed.epoch = static_cast<uint64_t>(Int(object, "epoch"));
    if (const json::value* topics = object.if_contains("topics"); topics && topics->is_object()) {
      for (const auto& [topic, t] : topics->as_object()) {
        const json::value* keys = t.as_object().if_contains("keys");
        if (!keys || !keys->is_array()) continue;
        for (const json::value& k : keys->as_array()) {
          parsed.layouts.push_back(ReadLayout(k.as_object(), parsed.instance, std::string(topic)));
        }
      }
    }
  } catch (const std::exception& e) {
    if (error) *error = std::string("not a salt map: ") + e.what();
    return false;
  }
  *map = std::move(parsed);
  return true;
}

bool SaltMapHistory::Apply(std::string_view text, std::string* error) {
  PublishedSaltMap map;
  if (!ParseSaltMap(text, &map, error)) return false;
  for (KeyLayout& layout : map.layouts) {
    if (layout.epoch == 0) continue;  // a change still in progress has no epoch yet
    EpochKey ek{layout.instance, layout.epoch, layout.topic, layout.key};
    if (by_epoch_.contains(ek)) continue;  // a layout never changes once published
    std::vector<uint64_t>& epochs = by_key_[KeyKey{layout.topic, layout.key, layout.instance}];
    epochs.insert(std::upper_bound(epochs.begin(), epochs.end(), layout.epoch), layout.epoch);
    if (layout.action == "cooled") cooled_ids_.insert(layout.topic + '\0' + layout.key);
    destinations_.insert(layout.destination);
    by_epoch_.emplace(std::move(ek), std::move(layout));
  }
  uint64_t& latest = latest_[map.instance];
  latest = std::max(latest, map.epoch);
  ++updates_;
  Forget();
  return true;
}

void SaltMapHistory::Forget() {
  while (by_epoch_.size() > max_layouts_) {
    // The oldest epoch of any instance goes first.
    auto oldest = std::min_element(by_epoch_.begin(), by_epoch_.end(), [](const auto& a,
                                                                          const auto& b) {
      return a.second.epoch < b.second.epoch;
    });
    const KeyLayout& l = oldest->second;
    auto it = by_key_.find(KeyKey{l.topic, l.key, l.instance});
    if (it != by_key_.end()) {
      std::erase(it->second, l.epoch);
      if (it->second.empty()) by_key_.erase(it);
    }
    const std::string topic = l.topic, key = l.key;
    const bool cooled = l.action == "cooled";
    by_epoch_.erase(oldest);
    if (cooled) {
      bool still = false;
      for (const KeyLayout* other : Layouts(topic, key)) still |= other->action == "cooled";
      if (!still) cooled_ids_.erase(topic + '\0' + key);
    }
  }
}

const KeyLayout* SaltMapHistory::Find(std::string_view instance, uint64_t epoch) const {
  auto it = by_epoch_.lower_bound(EpochKey{std::string(instance), epoch, "", ""});
  return it == by_epoch_.end() || std::get<0>(it->first) != instance ||
                 std::get<1>(it->first) != epoch
             ? nullptr
             : &it->second;
}

const KeyLayout* SaltMapHistory::Find(std::string_view topic, std::string_view key,
                                      std::string_view instance, uint64_t epoch) const {
  auto it = by_epoch_.find(
      EpochKey{std::string(instance), epoch, std::string(topic), std::string(key)});
  return it == by_epoch_.end() ? nullptr : &it->second;
}

std::vector<const KeyLayout*> SaltMapHistory::Layouts(std::string_view topic,
                                                      std::string_view key) const {
  std::vector<const KeyLayout*> result;
  for (auto it = by_key_.lower_bound(KeyKey{std::string(topic), std::string(key), ""});
       it != by_key_.end() && std::get<0>(it->first) == topic && std::get<1>(it->first) == key;
       ++it) {
    for (uint64_t epoch : it->second) {
      result.push_back(&by_epoch_.at(EpochKey{std::get<2>(it->first), epoch, std::string(topic),
                                              std::string(key)}));
    }
  }
  std::sort(result.begin(), result.end(),
            [](const KeyLayout* a, const KeyLayout* b) { return a->epoch < b->epoch; });
  return result;
}

const KeyLayout* SaltMapHistory::LayoutAt(std::string_view topic, std::string_view key,
                                          uint64_t epoch) const {
  const KeyLayout* best = nullptr;
  for (const KeyLayout* layout : Layouts(topic, key)) {
    if (layout->epoch <= epoch) best = layout;
  }
  return best;
}

uint64_t SaltMapHistory::LatestEpoch(std::string_view instance) const {
  auto it = latest_.find(instance);
  return it == latest_.end() ? 0 : it->second;
}

}  // namespace saltproxy
