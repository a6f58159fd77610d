// Which librdkafka properties SaltConsumer's control-topic reader takes from its user's.
#include "consumer_properties.h"

#include <gtest/gtest.h>

namespace saltproxy::consumer_internal {
namespace {

TEST(ConsumerPropertiesTest, HowToReachAndLogInGoesToTheControlReaderToo) {
  for (const char* name : {"security.protocol", "sasl.mechanisms", "sasl.username",
                           "sasl.password", "ssl.ca.location", "enable.ssl.certificate.verification",
                           "socket.timeout.ms", "client.id", "client.dns.lookup",
                           "broker.address.family", "enable.sasl.oauthbearer.unsecure.jwt"}) {
    EXPECT_TRUE(IsConnectionProperty(name)) << name;
  }
}

TEST(ConsumerPropertiesTest, WhatShapesTheDataConsumerStaysThere) {
  for (const char* name : {"group.id", "group.instance.id", "auto.offset.reset",
                           "enable.auto.commit", "fetch.max.bytes", "session.timeout.ms",
                           "partition.assignment.strategy", "isolation.level"}) {
    EXPECT_FALSE(IsConnectionProperty(name)) << name;
  }
}

}  // namespace
}  // namespace saltproxy::consumer_internal
