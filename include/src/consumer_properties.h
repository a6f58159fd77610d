// Which of a SaltConsumer user's librdkafka properties its control-topic reader takes too
// (internal to the library; not installed).
#pragma once

#include <string_view>

namespace saltproxy::consumer_internal {

// How to reach and log in to the cluster (security.*, sasl.*, ssl.*, socket.*, client.*, …):
// the control-topic reader needs them as the data consumer does. The rest (group, fetch and
// offset settings) shape the data consumer only.
inline bool IsConnectionProperty(std::string_view name) {
  for (std::string_view prefix :
       {"security.", "sasl.", "ssl.", "enable.ssl.", "enable.sasl.", "socket.", "client.",
        "broker.address.", "reconnect.", "api.version."}) {
    if (name.substr(0, prefix.size()) == prefix) return true;
  }
  return name == "broker.version.fallback";
}

}  // namespace saltproxy::consumer_internal
