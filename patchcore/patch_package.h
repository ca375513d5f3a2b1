// PatchPackage: one signed file holding a patch.
//
// Layout (all integers little-endian):
//   "HOTPATCH-PKG-v1\n"            16-byte magic
//   u32 manifest size, manifest     JSON (see Manifest)
//   u64 object size, object         the patch object: an ELF shared object (-fPIC -shared)
//   u32 signature size, signature   Ed25519 over every byte before the size (0: unsigned)
// The manifest also carries the object's SHA-256, so a package whose parts
// were swapped fails even when unsigned.
//
// Thread-safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace patchlab::patchcore {

struct FunctionMapping {
  std::string old_name;  // in the target
  std::string new_name;  // in the patch object
};

struct Manifest {
  std::string id;
  uint64_t seq = 0;
  std::string target_build_id;
  std::string target_file;  // basename of the target module, e.g. "server" or "libz.so.1"
  std::vector<FunctionMapping> functions;
  std::vector<std::string> refs;  // private target symbols the patch object uses
  bool replaces_all = false;
  std::vector<std::string> replaces;  // ids this patch supersedes
  std::vector<std::string> depends;   // ids that must be live
  std::string object_sha256;
  std::string tool_version;

  std::string ToJson() const;
  // Fails with kParse naming `origin` and the bad field.
  static Result<Manifest> FromJson(std::string_view json, std::string_view origin);
};

struct PatchPackage {
  Manifest manifest;
  std::string object;        // the ELF bytes
  std::string signature;     // empty when unsigned
  std::string signed_bytes;  // what the signature covers
  std::string sha256;        // of the whole package file

  bool is_signed() const { return !signature.empty(); }
};

// Writes DIR/patch.key (0600, PKCS#8 PEM) and DIR/patch.pub (SPKI PEM).
// Refuses (kInvalidArgument) to overwrite an existing key.
Status GenerateKeyPair(const std::filesystem::path& dir);

// Encodes a package; signs it with the private key at `key_path` unless empty.
Result<std::string> EncodePackage(const Manifest& manifest, std::string_view object,
                                  const std::filesystem::path& key_path);

// Decodes a package file's bytes. kParse naming `origin` when malformed.
Result<PatchPackage> DecodePackage(std::string_view bytes, std::string_view origin);
Result<PatchPackage> ReadPackage(const std::filesystem::path& path);

// Checks the signature against the public key at `pubkey_path`. kRefused when
// the package is unsigned, tampered with or signed by another key.
Status VerifyPackage(const PatchPackage& package, const std::filesystem::path& pubkey_path);

}  // namespace patchlab::patchcore
