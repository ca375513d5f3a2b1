# The lab runner (issue 5, lab part); included by tests/harness/CMakeLists.txt.
patchlab_add_gtest(harness_runner_figures_test LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/runner_figures_test.cc
  LIBS patchlab_lab)
