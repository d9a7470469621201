// Fixture: a relative include (must be reported).
#include "../nn/layer.hpp"
