# The lab runner (issue 5, lab part); included by tests/harness/CMakeLists.txt.
patchlab_add_gtest(harness_runner_figures_test LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/runner_figures_test.cc ${CMAKE_CURRENT_LIST_DIR}/runner_cell_test.cc
          ${CMAKE_CURRENT_LIST_DIR}/runner_app_cell_test.cc ${CMAKE_CURRENT_LIST_DIR}/library_build_test.cc
  LIBS patchlab_lab)
# The real `patchlab run` end to end: host processes (process) and a QEMU VM (vm).
foreach(label process vm)
  set(t harness_runner_${label}_test)
  patchlab_add_gtest(${t} LABEL ${label}
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/runner_end_to_end_test.cc
    LIBS patchlab_metrics patchlab_base
    TIMEOUT 600)
  add_dependencies(${t} patchlab hotpatch)
  target_compile_definitions(${t} PRIVATE
    PATCHLAB_BIN="$<TARGET_FILE:patchlab>"
    HOTPATCH_BIN="$<TARGET_FILE:hotpatch>"
    PATCHLAB_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    PATCHLAB_E2E_VM=$<STREQUAL:${label},vm>)
endforeach()
# A real application in a Debian-system image (issue 14): one cell of
# nginx-gzip-bad, and one of nginx-gzip with patch.processes: all. The first run on a machine makes the image with mmdebstrap
# (about 5 minutes), hence the long timeout.
patchlab_add_gtest(harness_app_vm_test LABEL vm
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/app_end_to_end_test.cc
  LIBS patchlab_metrics patchlab_base
  TIMEOUT 1800)
add_dependencies(harness_app_vm_test patchlab hotpatch patchlab-agent)
target_compile_definitions(harness_app_vm_test PRIVATE
  PATCHLAB_BIN="$<TARGET_FILE:patchlab>"
  PATCHLAB_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
