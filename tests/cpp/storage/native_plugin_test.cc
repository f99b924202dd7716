// PLACEHOLDER: tests of the native_plugin adapter (conformance instantiation + its own cases) go here.
#include <gtest/gtest.h>
