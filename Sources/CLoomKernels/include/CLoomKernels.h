#include "loom_cells.h"
#include "loom_gemm.h"
#include "loom_optimizers.h"
#include "loom_runtime.h"
