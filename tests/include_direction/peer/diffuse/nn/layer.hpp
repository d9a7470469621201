// Fixture: nn includes its peer io (must be reported).
#include "diffuse/io/file.hpp"
