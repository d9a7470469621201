// Fixture: the top of the stack may include anything below it.
#include "diffuse/models/model.hpp"
