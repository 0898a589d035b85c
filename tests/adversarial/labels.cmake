# Included by ctest after the discovered tests (TEST_INCLUDE_FILES, tests/CMakeLists.txt):
# the test cases named "adversarial: ..." get the label `adversarial`, so that
# `ctest -L adversarial` runs exactly them and `ctest -LE adversarial` everything else.
foreach(test IN LISTS convergence_tests_TESTS)
  if(test MATCHES "^adversarial: ")
    set_tests_properties("${test}" PROPERTIES LABELS adversarial)
  endif()
endforeach()
