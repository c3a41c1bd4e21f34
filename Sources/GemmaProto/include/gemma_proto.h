// Umbrella header of the generated protocol code (scripts/gen-proto.sh writes it).
#include "gemma/v1/common.pb-c.h"
#include "gemma/v1/decoder.pb-c.h"
#include "gemma/v1/rpc.pb-c.h"
#include "gemma/v1/tokenizer.pb-c.h"
#include "gemma/v1/vision.pb-c.h"
