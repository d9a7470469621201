// Fixture: own folder, a lower folder, version.hpp, system headers: all allowed.
#include <vector>
#include "diffuse/core/tensor.hpp"
#include "diffuse/models/part.hpp"
#include "diffuse/version.hpp"
