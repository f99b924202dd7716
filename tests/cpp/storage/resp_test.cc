// PLACEHOLDER: tests of the resp adapter (conformance instantiation + its own cases) go here.
#include <gtest/gtest.h>
