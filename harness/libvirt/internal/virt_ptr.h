// Move-only owners of libvirt handles, and the last libvirt error as an Error.
//
// Every virXxxPtr the backend holds lives in one of these, so no exit path can
// leak a reference (a leaked virConnectPtr keeps the daemon connection open; a
// leaked virDomainPtr is only memory, but the domain it names is destroyed
// separately by its owner, see libvirt_vm.h).
//
// Thread-safety: as std::unique_ptr. The handles themselves are thread-safe in
// libvirt; the last-error state is per thread, so read it on the failing thread.
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <memory>
#include <string>
#include <utility>

#include "base/error.h"

namespace patchlab::harness::libvirt_internal {

struct ConnectCloser {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct DomainFreer {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
struct StreamFreer {
  void operator()(virStreamPtr s) const { virStreamFree(s); }
};
struct PoolFreer {
  void operator()(virStoragePoolPtr p) const { virStoragePoolFree(p); }
};
struct VolFreer {
  void operator()(virStorageVolPtr v) const { virStorageVolFree(v); }
};

using ConnectPtr = std::unique_ptr<virConnect, ConnectCloser>;
using DomainPtr = std::unique_ptr<virDomain, DomainFreer>;
using StreamPtr = std::unique_ptr<virStream, StreamFreer>;
using PoolPtr = std::unique_ptr<virStoragePool, PoolFreer>;
using VolPtr = std::unique_ptr<virStorageVol, VolFreer>;

// A string libvirt allocated (XML documents, host names); freed with free().
struct CFreer {
  void operator()(char* p) const { free(p); }  // NOLINT: libvirt's allocator is malloc
};
using CString = std::unique_ptr<char, CFreer>;

inline std::string TakeString(char* p) {
  CString owned(p);
  return owned ? std::string(owned.get()) : std::string();
}

// The calling thread's last libvirt error message ("unknown error" if none).
inline std::string LastVirError() {
  const char* m = virGetLastErrorMessage();
  return m != nullptr ? std::string(m) : std::string("unknown libvirt error");
}

// The libvirt error code of the calling thread's last error (VIR_ERR_OK if none).
inline int LastVirErrorCode() {
  virErrorPtr e = virGetLastError();
  return e != nullptr ? e->code : VIR_ERR_OK;
}

// An Error for a failed libvirt call: "`what`: libvirt's message".
inline std::unexpected<Error> FailVirt(ErrorCode code, const std::string& what) {
  int vcode = LastVirErrorCode();
  if (vcode == VIR_ERR_NO_DOMAIN || vcode == VIR_ERR_NO_STORAGE_POOL ||
      vcode == VIR_ERR_NO_STORAGE_VOL) {
    code = ErrorCode::kNotFound;
  }
  return std::unexpected(Error(code, what + ": " + LastVirError()));
}

}  // namespace patchlab::harness::libvirt_internal
