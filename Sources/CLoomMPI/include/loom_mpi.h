// The few MPI calls Loom makes, as plain C functions: Open MPI's MPI_COMM_WORLD, MPI_FLOAT,
// MPI_SUM and friends are macros over global objects, which Swift cannot import.
#ifndef LOOM_MPI_H
#define LOOM_MPI_H

#include <stddef.h>

/// Initializes MPI (threads: only the calling thread makes MPI calls); errors return codes
/// instead of aborting. Returns an MPI error code (0: success).
int loom_mpi_init(void);
int loom_mpi_initialized(void);
int loom_mpi_rank(void);
int loom_mpi_size(void);
/// Sums `count` floats (or doubles) over every rank in place.
int loom_mpi_allreduce_sum_float(float *values, size_t count);
int loom_mpi_allreduce_sum_double(double *values, size_t count);
int loom_mpi_allreduce_min_double(double *values, size_t count);
int loom_mpi_allreduce_max_double(double *values, size_t count);
/// Ends every rank of the job with `code`.
void loom_mpi_abort(int code);
int loom_mpi_finalize(void);
/// The text of an MPI error code.
void loom_mpi_error_string(int code, char *text, int capacity);

#endif
