// Builds salt maps in the JSON shape saltproxy publishes (Router::SaltMapJson), for tests.
#pragma once

#include <boost/json.hpp>

#include <string>
#include <vector>

#include "saltproxy/salt_map.h"

namespace saltproxy::testing {

inline boost::json::object LayoutJson(const KeyLayout& l) {
  boost::json::array partitions;
  for (int32_t p : l.partitions) partitions.push_back(p);
  boost::json::array cutover;
  for (const CutOverPoint& c : l.cutover) {
    cutover.push_back(boost::json::object{{"topic", c.topic}, {"partition", c.partition},
                                          {"max_offset", c.max_offset}});
  }
  return boost::json::object{{"key", l.key},
                             {"action", l.action},
                             {"destination", l.destination},
                             {"salts", l.partitions.size()},
                             {"partitions", partitions},
                             {"epoch", l.epoch},
                             {"since_seq", l.since_seq},
                             {"cutover", cutover},
                             {"rate_rps", 100.0}};
}

// The map `instance` publishes at `epoch` with `layouts` current.
inline std::string MapJson(const std::string& instance, uint64_t epoch,
                           const std::vector<KeyLayout>& layouts) {
  boost::json::object topics;
  for (const KeyLayout& l : layouts) {
    boost::json::value& t = topics[l.topic];
    if (!t.is_object()) t = boost::json::object{{"keys", boost::json::array()}};
    t.as_object()["keys"].as_array().push_back(LayoutJson(l));
  }
  return boost::json::serialize(
      boost::json::object{{"epoch", epoch}, {"instance", instance}, {"topics", topics}});
}

}  // namespace saltproxy::testing
