// Fixture: a model that includes training code (must be reported).
#include "diffuse/train/step.hpp"
