// The build's version: the project version and `git describe` at build time.
#pragma once

namespace patchlab {
const char* Version();
const char* GitDescribe();
}  // namespace patchlab
