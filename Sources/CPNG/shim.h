#include <png.h>
// PNG_FORMAT_* are macros built from other macros; Swift does not import them.
static const unsigned int CPNG_FORMAT_RGBA = PNG_FORMAT_RGBA;
static const unsigned int CPNG_FORMAT_RGB = PNG_FORMAT_RGB;
