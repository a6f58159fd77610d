// The source-text scanner behind JSON-embedded keys and values (proxy/http/json_text.h).
#include "proxy/http/json_text.h"

#include <gtest/gtest.h>

#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;

TEST(JsonTextTest, MemberTextIsTheSpanAsWritten) {
  const std::string text = R"( { "a" : 1.50 , "b":{"c":[1e3, "x\"}"]}, "a\u0062" : -0 } )";
  absl::StatusOr<absl::string_view> a = MemberText(text, "a");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(*a, "1.50");
  absl::StatusOr<absl::string_view> b = MemberText(text, "b");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(*b, R"({"c":[1e3, "x\"}"]})");
  // "a\u0062" is "ab": names are compared decoded, the last of a repeated name wins.
  absl::StatusOr<absl::string_view> ab = MemberText(text, "ab");
  ASSERT_THAT(ab, IsOk());
  EXPECT_EQ(*ab, "-0");
  EXPECT_THAT(MemberText(text, "c"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(MemberText("{}", "a"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(JsonTextTest, ElementTextsInOrder) {
  absl::StatusOr<std::vector<absl::string_view>> e = ElementTexts(R"([ 1 , {"a":[]} ,"]" ,true])");
  ASSERT_THAT(e, IsOk());
  ASSERT_EQ(e->size(), 4u);
  EXPECT_EQ((*e)[0], "1");
  EXPECT_EQ((*e)[1], R"({"a":[]})");
  EXPECT_EQ((*e)[2], R"("]")");
  EXPECT_EQ((*e)[3], "true");
  ASSERT_THAT(ElementTexts("[]"), IsOk());
  EXPECT_TRUE(ElementTexts(" [ ] ")->empty());
}

TEST(JsonTextTest, CompactJsonDropsWhitespaceOutsideStringsOnly) {
  EXPECT_EQ(CompactJson("{ \"a b\" :\t[ 1 ,\n 2.0 ] , \"c\\\" d\" : \" \" }"),
            R"({"a b":[1,2.0],"c\" d":" "})");
}

// Hostile input (never parsed): errors, no crash, no unbounded recursion.
TEST(JsonTextTest, HostileTextIsRefused) {
  for (const char* text : {"", "{", "[", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,", "[1,",
                           "\"", "{\"a\\\":1}", "{1:2}", "[,]", "{\"a\" 1}", "nul"}) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(MemberText(text, "a").ok());
    EXPECT_FALSE(ElementTexts(text).ok());
  }
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(ElementTexts(deep).ok());
  EXPECT_FALSE(MemberText("{\"a\":" + deep + "}", "a").ok());
}

}  // namespace
}  // namespace saltproxy
