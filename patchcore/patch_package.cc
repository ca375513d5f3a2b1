#include "patchcore/patch_package.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/json_util.h"
#include "base/version.h"

namespace patchlab::patchcore {
namespace {

constexpr char kMagic[] = "HOTPATCH-PKG-v1\n";
constexpr size_t kMagicSize = 16;

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string OpensslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

template <typename T>
void PutLe(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

template <typename T>
bool GetLe(std::string_view& in, T& v) {
  if (in.size() < sizeof(T)) return false;
  v = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(static_cast<uint8_t>(in[i])) << (8 * i);
  in.remove_prefix(sizeof(T));
  return true;
}

Result<PkeyPtr> ReadKey(const std::filesystem::path& path, bool private_key) {
  auto pem = ReadFile(path);
  if (!pem) return std::unexpected(std::move(pem.error()));
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())), &BIO_free);
  EVP_PKEY* key = private_key ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                              : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (!key) {
    return Fail(ErrorCode::kParse, "{}: not a PEM {} key: {}", path.string(),
                private_key ? "private" : "public", OpensslError());
  }
  PkeyPtr owned(key, &EVP_PKEY_free);
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
    return Fail(ErrorCode::kParse, "{}: not an Ed25519 key", path.string());
  }
  return owned;
}

}  // namespace

std::string Manifest::ToJson() const {
  nlohmann::ordered_json j;
  j["format"] = 1;
  j["id"] = id;
  j["seq"] = seq;
  j["target"] = {{"build_id", target_build_id}, {"file", target_file}};
  j["functions"] = nlohmann::ordered_json::array();
  for (const FunctionMapping& f : functions) {
    j["functions"].push_back({{"old", f.old_name}, {"new", f.new_name}});
  }
  j["refs"] = refs;
  if (replaces_all) {
    j["replaces"] = "all";
  } else {
    j["replaces"] = replaces;
  }
  j["depends"] = depends;
  j["object_sha256"] = object_sha256;
  j["tool_version"] = tool_version;
  return j.dump(2);
}

Result<Manifest> Manifest::FromJson(std::string_view json, std::string_view origin) {
  auto parsed = ParseJson(json, fmt::format("{}: manifest", origin));
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  const nlohmann::json& j = *parsed;
  if (!j.is_object()) return Fail(ErrorCode::kParse, "{}: manifest is not a JSON object", origin);
  Manifest m;
  std::string field;
  try {
    field = "format";
    if (JsonInteger<int>(j, "format") != 1) {
      return Fail(ErrorCode::kParse, "{}: manifest format {} is not supported", origin,
                  j.at("format").dump());
    }
    field = "id";
    m.id = j.at("id").get<std::string>();
    field = "seq";
    m.seq = JsonInteger<uint64_t>(j, "seq");
    field = "target.build_id";
    m.target_build_id = j.at("target").at("build_id").get<std::string>();
    field = "target.file";
    m.target_file = j.at("target").at("file").get<std::string>();
    field = "functions";
    for (const auto& f : j.at("functions")) {
      m.functions.push_back({f.at("old").get<std::string>(), f.at("new").get<std::string>()});
    }
    field = "refs";
    m.refs = j.at("refs").get<std::vector<std::string>>();
    field = "replaces";
    if (j.at("replaces").is_string()) {
      if (j.at("replaces").get<std::string>() != "all") {
        return Fail(ErrorCode::kParse, "{}: manifest field replaces: expected \"all\" or a list",
                    origin);
      }
      m.replaces_all = true;
    } else {
      m.replaces = j.at("replaces").get<std::vector<std::string>>();
    }
    field = "depends";
    m.depends = j.at("depends").get<std::vector<std::string>>();
    field = "object_sha256";
    m.object_sha256 = j.at("object_sha256").get<std::string>();
    field = "tool_version";
    m.tool_version = j.value("tool_version", "");
  } catch (const std::exception& e) {  // nlohmann's, and JsonInteger's
    return Fail(ErrorCode::kParse, "{}: manifest field {}: {}", origin, field, e.what());
  }
  if (m.id.empty()) return Fail(ErrorCode::kParse, "{}: manifest field id is empty", origin);
  if (m.functions.empty()) {
    return Fail(ErrorCode::kParse, "{}: manifest field functions is empty", origin);
  }
  return m;
}

Status GenerateKeyPair(const std::filesystem::path& dir) {
  if (auto st = MakeDirs(dir, 0700); !st) return st;
  std::filesystem::path priv = dir / "patch.key";
  std::filesystem::path pub = dir / "patch.pub";
  std::error_code ec;
  if (std::filesystem::exists(priv, ec)) {
    return Fail(ErrorCode::kInvalidArgument, "{} already exists; not overwriting a key",
                priv.string());
  }
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), &EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) <= 0 || EVP_PKEY_keygen(ctx.get(), &raw) <= 0) {
    return Fail(ErrorCode::kInternal, "Ed25519 key generation failed: {}", OpensslError());
  }
  PkeyPtr key(raw, &EVP_PKEY_free);
  BioPtr priv_bio(BIO_new(BIO_s_mem()), &BIO_free);
  BioPtr pub_bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!PEM_write_bio_PrivateKey(priv_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) ||
      !PEM_write_bio_PUBKEY(pub_bio.get(), key.get())) {
    return Fail(ErrorCode::kInternal, "encoding the key pair: {}", OpensslError());
  }
  auto bio_text = [](BIO* b) {
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    return std::string(p, static_cast<size_t>(n));
  };
  if (auto st = WriteFileAtomic(priv, bio_text(priv_bio.get()), 0600); !st) return st;
  return WriteFileAtomic(pub, bio_text(pub_bio.get()), 0644);
}

Result<std::string> EncodePackage(const Manifest& manifest, std::string_view object,
                                  const std::filesystem::path& key_path) {
  std::string out(kMagic, kMagicSize);
  std::string json = manifest.ToJson();
  PutLe<uint32_t>(out, static_cast<uint32_t>(json.size()));
  out += json;
  PutLe<uint64_t>(out, object.size());
  out += object;
  std::string signature;
  if (!key_path.empty()) {
    auto key = ReadKey(key_path, /*private_key=*/true);
    if (!key) return std::unexpected(std::move(key.error()));
    MdCtxPtr md(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    size_t sig_len = 0;
    if (EVP_DigestSignInit(md.get(), nullptr, nullptr, nullptr, key->get()) <= 0 ||
        EVP_DigestSign(md.get(), nullptr, &sig_len,
                       reinterpret_cast<const unsigned char*>(out.data()), out.size()) <= 0) {
      return Fail(ErrorCode::kInternal, "signing with {}: {}", key_path.string(), OpensslError());
    }
    signature.resize(sig_len);
    if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(signature.data()), &sig_len,
                       reinterpret_cast<const unsigned char*>(out.data()), out.size()) <= 0) {
      return Fail(ErrorCode::kInternal, "signing with {}: {}", key_path.string(), OpensslError());
    }
    signature.resize(sig_len);
  }
  PutLe<uint32_t>(out, static_cast<uint32_t>(signature.size()));
  out += signature;
  return out;
}

Result<PatchPackage> DecodePackage(std::string_view bytes, std::string_view origin) {
  PatchPackage p;
  p.sha256 = Sha256Hex(bytes);
  std::string_view in = bytes;
  if (in.size() < kMagicSize || in.substr(0, kMagicSize) != std::string_view(kMagic, kMagicSize)) {
    return Fail(ErrorCode::kParse, "{}: not a hotpatch package (bad magic)", origin);
  }
  in.remove_prefix(kMagicSize);
  uint32_t manifest_size = 0;
  if (!GetLe(in, manifest_size) || in.size() < manifest_size) {
    return Fail(ErrorCode::kParse, "{}: truncated in the manifest", origin);
  }
  std::string_view manifest_json = in.substr(0, manifest_size);
  in.remove_prefix(manifest_size);
  uint64_t object_size = 0;
  if (!GetLe(in, object_size) || in.size() < object_size) {
    return Fail(ErrorCode::kParse, "{}: truncated in the patch object", origin);
  }
  p.object = std::string(in.substr(0, object_size));
  in.remove_prefix(object_size);
  p.signed_bytes = std::string(bytes.substr(0, bytes.size() - in.size()));
  uint32_t sig_size = 0;
  if (!GetLe(in, sig_size) || in.size() != sig_size) {
    return Fail(ErrorCode::kParse, "{}: malformed signature block", origin);
  }
  p.signature = std::string(in);
  auto manifest = Manifest::FromJson(manifest_json, origin);
  if (!manifest) return std::unexpected(std::move(manifest.error()));
  p.manifest = std::move(*manifest);
  if (Sha256Hex(p.object) != p.manifest.object_sha256) {
    return Fail(ErrorCode::kRefused,
                "{}: the patch object does not match the manifest's object_sha256 (tampered?)",
                origin);
  }
  return p;
}

Result<PatchPackage> ReadPackage(const std::filesystem::path& path) {
  auto bytes = ReadFile(path);
  if (!bytes) return std::unexpected(std::move(bytes.error()));
  return DecodePackage(*bytes, path.string());
}

Status VerifyPackage(const PatchPackage& package, const std::filesystem::path& pubkey_path) {
  if (!package.is_signed()) {
    return Fail(ErrorCode::kRefused,
                "package {} is unsigned (rule: signed packages only; "
                "--allow-unsigned overrides)",
                package.manifest.id);
  }
  auto key = ReadKey(pubkey_path, /*private_key=*/false);
  if (!key) return std::unexpected(std::move(key.error()));
  MdCtxPtr md(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (EVP_DigestVerifyInit(md.get(), nullptr, nullptr, nullptr, key->get()) <= 0) {
    return Fail(ErrorCode::kInternal, "verifying: {}", OpensslError());
  }
  int ok = EVP_DigestVerify(
      md.get(), reinterpret_cast<const unsigned char*>(package.signature.data()),
      package.signature.size(), reinterpret_cast<const unsigned char*>(package.signed_bytes.data()),
      package.signed_bytes.size());
  if (ok != 1) {
    ERR_clear_error();
    return Fail(ErrorCode::kRefused,
                "package {}: bad signature for key {} (tampered, or signed by another key)",
                package.manifest.id, pubkey_path.string());
  }
  return {};
}

}  // namespace patchlab::patchcore
