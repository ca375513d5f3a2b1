# Scenario parsing (issue 5, lab part); included by tests/harness/CMakeLists.txt.
patchlab_add_gtest(harness_scenario_test LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/scenario_test.cc
  LIBS patchlab_lab)
target_compile_definitions(harness_scenario_test PRIVATE
  PATCHLAB_SCENARIOS_DIR="${PROJECT_SOURCE_DIR}/scenarios")
