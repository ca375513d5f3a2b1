// Package encoding and signatures, without processes.
#include "patchcore/patch_package.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "base/file_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::patchcore {
namespace {

Manifest SampleManifest(std::string_view object) {
  Manifest m;
  m.id = "fix-1";
  m.seq = 7;
  m.target_build_id = "abcdef";
  m.target_file = "server";
  m.functions = {{"parse", "parse_v2"}};
  m.refs = {"table"};
  m.object_sha256 = Sha256Hex(object);
  return m;
}

TEST(PatchPackage, SignedRoundTripAndTamperDetection) {
  auto dir = std::filesystem::path(::testing::TempDir()) / "pkg_keys";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(GenerateKeyPair(dir).has_value());
  EXPECT_FALSE(GenerateKeyPair(dir).has_value());  // never overwrites a key
  std::string object =
      "\x7f"
      "ELF pretend object";
  auto bytes = EncodePackage(SampleManifest(object), object, dir / "patch.key");
  ASSERT_OK(bytes);
  auto pkg = DecodePackage(*bytes, "sample");
  ASSERT_OK(pkg);
  EXPECT_EQ(pkg->manifest.id, "fix-1");
  EXPECT_EQ(pkg->manifest.functions[0].new_name, "parse_v2");
  EXPECT_TRUE(VerifyPackage(*pkg, dir / "patch.pub").has_value());

  std::string flipped = *bytes;
  flipped[flipped.find("fix-1")] = 'g';
  auto bad = DecodePackage(flipped, "flipped");
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(VerifyPackage(*bad, dir / "patch.pub").error().code(), ErrorCode::kRefused);

  EXPECT_EQ(DecodePackage(bytes->substr(0, 40), "cut").error().code(), ErrorCode::kParse);
}

TEST(PatchPackage, UnsignedIsRefusedByVerify) {
  std::string object = "obj";
  auto bytes = EncodePackage(SampleManifest(object), object, "");
  ASSERT_TRUE(bytes.has_value());
  auto pkg = DecodePackage(*bytes, "unsigned");
  ASSERT_TRUE(pkg.has_value());
  EXPECT_FALSE(pkg->is_signed());
  auto st = VerifyPackage(*pkg, "/nonexistent.pub");
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), ErrorCode::kRefused);
}

// The manifest is read before any signature is checked, so it is hostile
// input: a number that is not an integer (read before through a cast that is
// undefined behaviour for 1e30) and deep nesting end in errors naming the file.
TEST(PatchPackage, HostileManifestIsAnErrorNamingThePackage) {
  std::string json = SampleManifest("obj").ToJson();
  auto with = [&](std::string_view from, std::string_view to) {
    std::string s = json;
    s.replace(s.find(from), from.size(), to);
    return Manifest::FromJson(s, "fix.hpk");
  };
  ASSERT_OK(with("\"seq\": 7", "\"seq\": 7"));
  auto huge = with("\"seq\": 7", "\"seq\": 1e30");
  ASSERT_FALSE(huge.has_value());
  EXPECT_THAT(
      huge.error().ToString(),
      ::testing::HasSubstr("fix.hpk: manifest field seq: field 'seq': expected an integer"));
  auto format = with("\"format\": 1", "\"format\": 1.9");
  ASSERT_FALSE(format.has_value());
  EXPECT_THAT(format.error().ToString(), ::testing::HasSubstr("manifest field format"));
  auto deep = with("\"format\": 1", "\"format\": " + std::string(5000, '['));
  ASSERT_FALSE(deep.has_value());
  EXPECT_THAT(deep.error().ToString(), ::testing::HasSubstr("fix.hpk: manifest: byte"));
  EXPECT_THAT(deep.error().ToString(), ::testing::HasSubstr("nested deeper than 64 levels"));
}

}  // namespace
}  // namespace patchlab::patchcore
