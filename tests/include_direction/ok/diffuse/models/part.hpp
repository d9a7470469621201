// Fixture.
#include "diffuse/core/tensor.hpp"
