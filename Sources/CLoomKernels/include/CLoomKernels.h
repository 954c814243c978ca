#include "loom_gemm.h"
#include "loom_runtime.h"
