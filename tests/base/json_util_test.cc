// ParseJson and JsonInteger on the hostile documents the fuzzers found and the
// ones they were built to stop: deep nesting, floats where integers belong.
#include "base/json_util.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/status_matchers.h"

namespace patchlab {
namespace {

using ::testing::HasSubstr;

TEST(JsonUtil, ParsesADocument) {
  auto j = ParseJson(R"({"a": [1, {"b": "]}["}]})", "doc.json");
  ASSERT_OK(j);
  EXPECT_EQ((*j)["a"][1]["b"], "]}[");
}

TEST(JsonUtil, SyntaxErrorNamesOriginLineAndColumn) {
  auto j = ParseJson("{\n  \"a\": 1,\n  oops\n}", "state.json");
  ASSERT_FALSE(j.has_value());
  EXPECT_EQ(j.error().code(), ErrorCode::kParse);
  EXPECT_THAT(j.error().message(), HasSubstr("state.json: parse error at line 3, column 3"));
}

// Found by fuzz/qmp_fuzzer.cc: nlohmann reports a number too large for a
// double as out_of_range (406), not parse_error, and it escaped ParseJson.
TEST(JsonUtil, NumberTooLargeForADoubleIsAParseError) {
  auto j = ParseJson(R"({"return": {}, "id": 179661e400})", "qmp");
  ASSERT_FALSE(j.has_value());
  EXPECT_EQ(j.error().code(), ErrorCode::kParse);
  EXPECT_THAT(j.error().message(), HasSubstr("qmp: number overflow parsing '179661e400'"));
}

TEST(JsonUtil, NestingPastTheBoundIsRefusedWithItsOffset) {
  std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_OK(ParseJson(ok, "ok.json"));
  // A megabyte of brackets: refused before nlohmann builds (or dumps) anything.
  std::string deep(1 << 20, '[');
  auto j = ParseJson(deep, "deep.json");
  ASSERT_FALSE(j.has_value());
  EXPECT_THAT(j.error().message(),
              HasSubstr(fmt::format("deep.json: byte {}: nested deeper than", kMaxJsonDepth)));
  // Brackets inside strings (escaped quotes too) are text, not nesting.
  std::string quoted = "[\"\\\"" + std::string(1000, '[') + "\"]";
  EXPECT_OK(ParseJson(quoted, "quoted.json"));
}

TEST(JsonUtil, IntegerReadsStrictly) {
  auto j = nlohmann::json::parse(
      R"({"n": 42, "neg": -1, "big": 18446744073709551615, "float": 1.5, "huge": 1e30,
          "text": "7", "wide": 4294967296})");
  EXPECT_EQ(JsonInteger<int>(j, "n"), 42);
  EXPECT_EQ(JsonInteger<int64_t>(j, "neg"), -1);
  EXPECT_EQ(JsonInteger<uint64_t>(j, "big"), UINT64_MAX);
  auto message = [&](auto read) -> std::string {
    try {
      read();
    } catch (const std::exception& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_THAT(message([&] { JsonInteger<uint64_t>(j, "neg"); }),
              HasSubstr("field 'neg': -1 does not fit a 64-bit unsigned integer"));
  EXPECT_THAT(message([&] { JsonInteger<int64_t>(j, "big"); }),
              HasSubstr("does not fit a 64-bit signed integer"));
  EXPECT_THAT(message([&] { JsonInteger<int32_t>(j, "wide"); }),
              HasSubstr("field 'wide': 4294967296 does not fit a 32-bit signed integer"));
  EXPECT_THAT(message([&] { JsonInteger<int64_t>(j, "float"); }),
              HasSubstr("field 'float': expected an integer, got 1.5"));
  EXPECT_THAT(message([&] { JsonInteger<int64_t>(j, "huge"); }),
              HasSubstr("field 'huge': expected an integer, got 1e+30"));
  EXPECT_THAT(message([&] { JsonInteger<int>(j, "text"); }),
              HasSubstr("field 'text': expected an integer, got string"));
  EXPECT_THAT(message([&] { JsonInteger<int>(j, "absent"); }),
              HasSubstr("field 'absent' is missing"));
  EXPECT_THAT(message([&] { JsonInteger<int>(j["n"], "x"); }),
              HasSubstr("field 'x': its parent is number, not an object"));
}

TEST(JsonUtil, FieldOrReadsTypesStrictlyAndFallsBackWhenAbsent) {
  auto j = nlohmann::json::parse(
      R"({"name": "vm", "up": true, "load": 0.5, "n": 3, "bad_name": 7, "bad_up": "yes",
          "bad_load": "high", "bad_n": 1e30})");
  EXPECT_EQ(JsonFieldOr<std::string>(j, "name", "x"), "vm");
  EXPECT_EQ(JsonFieldOr<std::string>(j, "absent", "x"), "x");
  EXPECT_TRUE(JsonFieldOr<bool>(j, "up", false));
  EXPECT_EQ(JsonFieldOr<double>(j, "load", 0.0), 0.5);
  EXPECT_EQ(JsonFieldOr<double>(j, "n", 0.0), 3.0) << "an integer is a number";
  EXPECT_EQ(JsonFieldOr<int>(j, "n", 0), 3);
  auto message = [&](auto read) -> std::string {
    try {
      read();
    } catch (const std::exception& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_THAT(message([&] { JsonFieldOr<std::string>(j, "bad_name", ""); }),
              HasSubstr("field 'bad_name': expected a string, got 7"));
  EXPECT_THAT(message([&] { JsonFieldOr<bool>(j, "bad_up", false); }),
              HasSubstr("field 'bad_up': expected true or false, got string"));
  EXPECT_THAT(message([&] { JsonFieldOr<double>(j, "bad_load", 0.0); }),
              HasSubstr("field 'bad_load': expected a number, got string"));
  EXPECT_THAT(message([&] { JsonFieldOr<int>(j, "bad_n", 0); }),
              HasSubstr("field 'bad_n': expected an integer, got 1e+30"));
  EXPECT_THAT(message([&] { JsonFieldOr<int>(nlohmann::json::array(), "n", 0); }),
              HasSubstr("field 'n': its parent is array, not an object"));
}

}  // namespace
}  // namespace patchlab
