# Included by ctest after the discovered tests (TEST_INCLUDE_FILES, tests/CMakeLists.txt):
# the test cases named "cluster: ..." (a NATS JetStream cluster of child processes)
# get the label `cluster`, so that `ctest -L cluster` runs exactly them, one at a
# time (RESOURCE_LOCK): two clusters starting at once on two cores can race for the
# free ports they pick and each slows the other's leader elections.
foreach(test IN LISTS convergence_tests_TESTS)
  if(test MATCHES "^cluster: ")
    set_tests_properties("${test}" PROPERTIES LABELS cluster RESOURCE_LOCK nats_cluster)
  endif()
endforeach()
