#include "loom_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <string.h>

int loom_mpi_init(void) {
    int provided = 0;
    int status = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (status != MPI_SUCCESS) return status;
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

int loom_mpi_initialized(void) {
    int flag = 0, finalized = 0;
    MPI_Initialized(&flag);
    MPI_Finalized(&finalized);
    return flag && !finalized;
}

int loom_mpi_rank(void) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

int loom_mpi_size(void) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

// MPI counts are ints: buffers longer than INT_MAX elements go in pieces.
static int allreduce(void *values, size_t count, size_t width, MPI_Datatype type, MPI_Op op) {
    char *bytes = values;
    while (count > 0) {
        int piece = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int status = MPI_Allreduce(MPI_IN_PLACE, bytes, piece, type, op, MPI_COMM_WORLD);
        if (status != MPI_SUCCESS) return status;
        bytes += (size_t)piece * width;
        count -= (size_t)piece;
    }
    return MPI_SUCCESS;
}

int loom_mpi_allreduce_sum_float(float *values, size_t count) { return allreduce(values, count, sizeof(float), MPI_FLOAT, MPI_SUM); }
int loom_mpi_allreduce_sum_double(double *values, size_t count) { return allreduce(values, count, sizeof(double), MPI_DOUBLE, MPI_SUM); }
int loom_mpi_allreduce_min_double(double *values, size_t count) { return allreduce(values, count, sizeof(double), MPI_DOUBLE, MPI_MIN); }
int loom_mpi_allreduce_max_double(double *values, size_t count) { return allreduce(values, count, sizeof(double), MPI_DOUBLE, MPI_MAX); }


void loom_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int loom_mpi_finalize(void) { return loom_mpi_initialized() ? MPI_Finalize() : MPI_SUCCESS; }

void loom_mpi_error_string(int code, char *text, int capacity) {
    char buffer[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (capacity <= 0) return;
    if (MPI_Error_string(code, buffer, &length) != MPI_SUCCESS) length = 0;
    if (length >= capacity) length = capacity - 1;
    memcpy(text, buffer, (size_t)length);
    text[length] = 0;
}
