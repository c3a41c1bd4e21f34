#include "sp_shim.h"
