// PLACEHOLDER: tests of the dax adapter (conformance instantiation + its own cases) go here.
#include <gtest/gtest.h>
