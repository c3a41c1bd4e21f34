#include "gemma_proto.h"
