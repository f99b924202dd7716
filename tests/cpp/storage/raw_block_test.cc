// PLACEHOLDER: tests of the raw_block adapter (conformance instantiation + its own cases) go here.
#include <gtest/gtest.h>
