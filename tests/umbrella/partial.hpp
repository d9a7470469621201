// A fixture for tests/umbrella/check.cmake: an umbrella that leaves headers out, which it must report.
#include "diffuse/core/shape.hpp"
#include "diffuse/version.hpp"
