// Fixture.
#include <vector>
