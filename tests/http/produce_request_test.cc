#include "proxy/http/produce_request.h"
#include "proxy/http/produce_result.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"

#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ProduceRequestTest, JsonFormatStoresKeysAndValuesAsJsonText) {
  auto records = ParseProduceBody(
      R"({"records":[{"key":"user-1","value":{"n":1}},{"value":[1,2]},{"key":null,"value":null}]})",
      EmbeddedFormat::kJson, "t", 100);
  ASSERT_THAT(records, IsOk());
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].topic, "t");
  EXPECT_EQ((*records)[0].key, "\"user-1\"");
  EXPECT_EQ((*records)[0].value, R"({"n":1})");
  EXPECT_FALSE((*records)[1].key.has_value());
  EXPECT_EQ((*records)[1].value, "[1,2]");
  EXPECT_FALSE((*records)[2].value.has_value());
  EXPECT_EQ((*records)[0].partition, -1);
}

// Issue 20: a JSON key or value is stored as the client's JSON text, numbers spelled as they
// were (Boost.JSON's DOM would store 53.5 as 5.35E1 and 1e999999 as Infinity), whitespace
// between tokens aside.
TEST(ProduceRequestTest, JsonFormatStoresNumbersAsTheClientWroteThem) {
  auto records = ParseProduceBody(
      absl::StrCat(R"({"records":[{"key":9.99,"value":53.5},{"key":1e3,"value":0.1},)",
                   R"({"key":1.0,"value":1e999999},)",
                   R"({"key":-0,"value":123456789012345678901234567890},)",
                   R"({"key" : "a\u00e9\"b" ,"value": { "n" : [ 1.50 , -0.0E+2 ] }}]})"),
      EmbeddedFormat::kJson, "t", 100);
  ASSERT_THAT(records, IsOk());
  ASSERT_EQ(records->size(), 5u);
  EXPECT_EQ((*records)[0].key, "9.99");
  EXPECT_EQ((*records)[0].value, "53.5");
  EXPECT_EQ((*records)[1].key, "1e3");
  EXPECT_EQ((*records)[1].value, "0.1");
  EXPECT_EQ((*records)[2].key, "1.0");
  EXPECT_EQ((*records)[2].value, "1e999999");
  EXPECT_EQ((*records)[3].key, "-0");
  EXPECT_EQ((*records)[3].value, "123456789012345678901234567890");
  EXPECT_EQ((*records)[4].key, R"("a\u00e9\"b")");
  EXPECT_EQ((*records)[4].value, R"({"n":[1.50,-0.0E+2]})");
}

TEST(ProduceRequestTest, JsonFormatStoresATenThousandDigitNumberWhole) {
  const std::string big(10000, '7');
  auto records = ParseProduceBody(absl::StrCat(R"({"records":[{"value":)", big, "}]}"),
                                  EmbeddedFormat::kJson, "t", 100);
  ASSERT_THAT(records, IsOk());
  EXPECT_EQ((*records)[0].value, big);
}

TEST(ProduceRequestTest, RepeatedFieldTakesTheLastAsTheParserDoes) {
  auto records = ParseProduceBody(R"({"records":[{"value":1.5,"value":2.50}]})",
                                  EmbeddedFormat::kJson, "t", 100);
  ASSERT_THAT(records, IsOk());
  EXPECT_EQ((*records)[0].value, "2.50");
}

TEST(ProduceRequestTest, V3JsonDataIsStoredAsTheClientWroteIt) {
  const std::string text =
      R"({"key":{"type":"JSON","data":9.99},)"
      R"("value":{"type":"JSON","data": {"price": 53.5, "n": 1e999999}}})";
  boost::json::value v = boost::json::parse(text);
  Record record;
  V3Payload key, value;
  ASSERT_THAT(ReadV3Record(v, text, &record, &key, &value), IsOk());
  EXPECT_EQ(record.key, "9.99");
  EXPECT_EQ(record.value, R"({"price":53.5,"n":1e999999})");
  EXPECT_EQ(value.size, record.value->size());
}

TEST(ProduceRequestTest, BinaryFormatDecodesBase64) {
  auto records = ParseProduceBody(R"({"records":[{"key":"a2V5","value":"dmFsdWU=","partition":2}]})",
                                  EmbeddedFormat::kBinary, "t", 100);
  ASSERT_THAT(records, IsOk());
  EXPECT_EQ((*records)[0].key, "key");
  EXPECT_EQ((*records)[0].value, "value");
  EXPECT_EQ((*records)[0].partition, 2);
}

TEST(ProduceRequestTest, HeadersAndTimestampAreAccepted) {
  auto records = ParseProduceBody(
      R"({"records":[{"value":1,"timestamp":1700000000000,"headers":[{"key":"h","value":"dg=="},{"key":"n","value":null}]}]})",
      EmbeddedFormat::kJson, "t", 100);
  ASSERT_THAT(records, IsOk());
  const Record& r = (*records)[0];
  EXPECT_EQ(r.timestamp_ms, 1700000000000);
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0].key, "h");
  EXPECT_EQ(r.headers[0].value, "v");
  EXPECT_FALSE(r.headers[1].value.has_value());
}

TEST(ProduceRequestTest, MalformedJsonIsInvalidArgument) {
  auto records = ParseProduceBody(R"({"records":[)", EmbeddedFormat::kJson, "t", 100);
  EXPECT_THAT(records, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed JSON")));
  EXPECT_EQ(ToProduceError(records.status()).http_status, 400);
}

TEST(ProduceRequestTest, EmptyRecordsIsUnprocessable) {
  auto records = ParseProduceBody(R"({"records":[]})", EmbeddedFormat::kJson, "t", 100);
  EXPECT_THAT(records, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("empty")));
  EXPECT_EQ(ToProduceError(records.status()).http_status, 422);
}

TEST(ProduceRequestTest, MissingRecordsIsUnprocessable) {
  EXPECT_THAT(ParseProduceBody(R"({"rec":[]})", EmbeddedFormat::kJson, "t", 100),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ParseProduceBody(R"([1,2])", EmbeddedFormat::kJson, "t", 100),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ProduceRequestTest, UnknownRecordFieldNamesIndexAndField) {
  EXPECT_THAT(ParseProduceBody(R"({"records":[{"value":1},{"vale":2}]})", EmbeddedFormat::kJson,
                               "t", 100),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("records[1]: unrecognized field \"vale\"")));
}

TEST(ProduceRequestTest, BadBase64IsUnprocessable) {
  EXPECT_THAT(ParseProduceBody(R"({"records":[{"value":"!!!"}]})", EmbeddedFormat::kBinary, "t",
                               100),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("records[0]: value: not valid base64")));
  EXPECT_THAT(ParseProduceBody(R"({"records":[{"value":7}]})", EmbeddedFormat::kBinary, "t", 100),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("base64 string")));
}

TEST(ProduceRequestTest, NegativePartitionIsUnprocessable) {
  EXPECT_THAT(ParseProduceBody(R"({"records":[{"value":1,"partition":-1}]})",
                               EmbeddedFormat::kJson, "t", 100),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("partition")));
}

TEST(ProduceRequestTest, TooManyRecordsIsOutOfRange) {
  auto records =
      ParseProduceBody(R"({"records":[{"value":1},{"value":2},{"value":3}]})",
                       EmbeddedFormat::kJson, "t", 2);
  EXPECT_THAT(records, StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("limit of 2")));
  EXPECT_EQ(ToProduceError(records.status()).http_status, 413);
}

TEST(ProduceRequestTest, ContentTypes) {
  EXPECT_EQ(*FormatFromContentType("application/vnd.kafka.json.v2+json"), EmbeddedFormat::kJson);
  EXPECT_EQ(*FormatFromContentType("application/vnd.kafka.json+json"), EmbeddedFormat::kJson);
  EXPECT_EQ(*FormatFromContentType("application/vnd.kafka.binary.v2+json"),
            EmbeddedFormat::kBinary);
  EXPECT_EQ(*FormatFromContentType("application/vnd.kafka.avro.v2+json"), EmbeddedFormat::kAvro);
  EXPECT_EQ(*FormatFromContentType("application/vnd.kafka.protobuf.v2+json"),
            EmbeddedFormat::kProtobuf);
  EXPECT_EQ(*FormatFromContentType("application/vnd.kafka.jsonschema.v2+json"),
            EmbeddedFormat::kJsonSchema);
  EXPECT_THAT(FormatFromContentType("text/plain"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("unsupported content type")));
  EXPECT_EQ(ToProduceError(FormatFromContentType("text/plain").status()).http_status, 415);
}

// Confluent's doc: the less specific types are permitted, and "if the embedded format is
// omitted, binary is assumed" (Python's requests.post(json=...) sends application/json).
TEST(ProduceRequestTest, TypesWithoutAnEmbeddedFormatMeanBinary) {
  for (const char* type : {"application/json", "application/json; charset=utf-8", "",
                           "application/vnd.kafka.v2+json", "application/vnd.kafka+json",
                           "application/octet-stream", "Application/JSON"}) {
    SCOPED_TRACE(type);
    absl::StatusOr<EmbeddedFormat> format = FormatFromContentType(type);
    ASSERT_THAT(format, IsOk());
    EXPECT_EQ(*format, EmbeddedFormat::kBinary);
  }
  EXPECT_THAT(FormatFromContentType("application/vnd.kafka.v1+json"),
              StatusIs(absl::StatusCode::kUnimplemented));
}

// Issue 20: the schema formats get the 422s of Confluent's v2 doc (POST /topics/{topic}) for
// the cases it lists, and 42206 (no schema registry) for a request that passes them.
TEST(ProduceRequestTest, SchemaFormatsGetConfluentsCodes) {
  struct Case {
    EmbeddedFormat format;
    const char* body;
    int error_code;
  };
  for (const Case& c : {
           Case{EmbeddedFormat::kAvro,
                R"({"value_schema":"{\"name\":\"int\",\"type\": \"int\"}",)"
                R"("records":[{"key":"k","value":12}]})", 42201},
           Case{EmbeddedFormat::kAvro, R"({"records":[{"value":12},{"value":24,"partition":1}]})",
                42202},
           Case{EmbeddedFormat::kAvro, R"({"value_schema":"not a schema","records":[{"value":1}]})",
                42205},
           Case{EmbeddedFormat::kAvro, R"({"value_schema":7,"records":[{"value":1}]})", 42205},
           Case{EmbeddedFormat::kJsonSchema, R"({"value_schema":"[1]","records":[{"value":1}]})",
                42205},
           // The doc's Avro example: valid, so what is missing is the registry.
           Case{EmbeddedFormat::kAvro,
                R"({"value_schema":"{\"name\":\"int\",\"type\": \"int\"}",)"
                R"("records":[{"value":12},{"value":24,"partition":1}]})", 42206},
           Case{EmbeddedFormat::kAvro, R"({"key_schema_id":1,"value_schema_id":2,)"
                R"("records":[{"key":1,"value":2}]})", 42206},
           Case{EmbeddedFormat::kProtobuf, R"({"value_schema":"syntax = \"proto3\"; message M {}",)"
                R"("records":[{"value":{}}]})", 42206},
           Case{EmbeddedFormat::kJsonSchema, R"({"value_schema":"{\"type\":\"object\"}",)"
                R"("records":[{"value":{}}]})", 42206},
       }) {
    SCOPED_TRACE(c.body);
    auto records = ParseProduceBody(c.body, c.format, "t", 100);
    ASSERT_FALSE(records.ok());
    EXPECT_EQ(ToProduceError(records.status()).http_status, 422);
    EXPECT_EQ(ToProduceError(records.status()).error_code, c.error_code) << records.status();
  }
}

TEST(ProduceResultTest, ABulkRecordsErrorLineHasTheShapeOfEveryOtherErrorLine) {
  DeliveryReport failed;
  failed.status = absl::DeadlineExceededError("message timed out");
  std::string line;
  AppendBulkResult(failed, false, &line);
  EXPECT_EQ(line, "{\"error_code\":50003,\"message\":\"message timed out\"}\n");
}

}  // namespace
}  // namespace saltproxy
