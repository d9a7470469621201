// Fixture: the umbrella is exempt.
#include "diffuse/app/program_logic.hpp"
