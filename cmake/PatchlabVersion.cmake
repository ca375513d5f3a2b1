# Bakes `git describe` into the binaries; refreshed on every build, rewritten only when it changes.
set(PATCHLAB_VERSION_CC ${CMAKE_BINARY_DIR}/generated/version.cc)
add_custom_target(patchlab_version_gen
  COMMAND ${CMAKE_COMMAND}
          -DSRC=${CMAKE_SOURCE_DIR} -DOUT=${PATCHLAB_VERSION_CC}
          -DFALLBACK=${PROJECT_VERSION}
          -P ${CMAKE_SOURCE_DIR}/cmake/WriteVersion.cmake
  BYPRODUCTS ${PATCHLAB_VERSION_CC}
  COMMENT "patchlab version from git describe")
