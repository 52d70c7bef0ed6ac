/* A small MPI program for the MPI app tests.
 *   mpi_probe OUT [ok|sleep|fail]
 * Every rank prints one line (rank, size, Slurm node name) to standard output; the ranks sum their ranks with
 * MPI_Allreduce and rank 0 writes "size=N sum=S" to OUT. "sleep" blocks every rank for ten minutes (to be
 * cancelled); "fail" makes rank 1 complain on standard error and abort the job with status 7. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size, sum = 0;
    const char *mode = argc > 2 ? argv[2] : "ok";
    const char *node = getenv("SLURMD_NODENAME");
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    printf("rank %d of %d on %s\n", rank, size, node ? node : "-");
    fflush(stdout);
    if (strcmp(mode, "sleep") == 0) sleep(600);
    if (strcmp(mode, "fail") == 0 && rank == 1) {
        fprintf(stderr, "rank 1: bad input, giving up\n");
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 7);
    }
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && argc > 1) {
        FILE *f = fopen(argv[1], "w");
        if (!f) { perror(argv[1]); MPI_Abort(MPI_COMM_WORLD, 2); }
        fprintf(f, "size=%d sum=%d\n", size, sum);
        fclose(f);
    }
    MPI_Finalize();
    return 0;
}
