// Assertions on Result<T> / Status (base/error.h) for GoogleTest: on failure
// they print the whole error chain, so a failing test says why.
//
//   auto scenario = LoadScenario(path);
//   ASSERT_OK(scenario);              // fatal, like ASSERT_TRUE; then use *scenario
//   EXPECT_OK(db.Record(cell));       // non-fatal
//
// Also re-exports gmock's HasSubstr so tests can say
// EXPECT_THAT(err.ToString(), HasSubstr("line 3")).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/error.h"

namespace patchlab::testing {

using ::testing::HasSubstr;

// The printable reason of a failed Result or Status; empty when it holds a value.
template <typename R>
std::string ErrorText(const R& result) {
  return result.has_value() ? std::string() : result.error().ToString();
}

}  // namespace patchlab::testing

#define PATCHLAB_OK_IMPL_(expr, fail_macro)                                  \
  do {                                                                       \
    const auto& patchlab_ok_result_ = (expr);                                \
    if (!patchlab_ok_result_.has_value())                                    \
      fail_macro() << #expr << " failed: " << patchlab_ok_result_.error().ToString(); \
  } while (0)

// Fails the test (and returns from the function) unless `expr` holds a value.
#define ASSERT_OK(expr) PATCHLAB_OK_IMPL_(expr, FAIL)
// Records a failure unless `expr` holds a value; the test goes on.
#define EXPECT_OK(expr) PATCHLAB_OK_IMPL_(expr, ADD_FAILURE)
